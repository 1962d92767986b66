"""Neural building blocks (propagation, fusion, mutual-information estimators)."""
