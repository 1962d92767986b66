"""Adding a model: one class in one file, registered by its decorator; no central list to edit.

Run: python examples/add_a_model.py   (trains it on the embedded synthetic dataset)
"""
import torch
from torch import nn

from graphrec import losses
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps


@register_model("biased-mf")
class BiasedMF(Recommender):
    r"""MF with item biases, :math:`\hat y_{ui} = e_u^\top e_i + b_i`, trained by BPR."""

    name = "biased-mf"
    task = "pairwise"  # (user, pos, neg) batches; judged by full ranking per user

    def __init__(self, ctx: ModelContext, embedding_dim: int = 32, reg_weight: float = 1e-4, **hp):
        super().__init__(ctx)
        self.user = nn.Parameter(0.1 * torch.randn(ctx.n_users, embedding_dim))
        self.item = nn.Parameter(0.1 * torch.randn(ctx.n_items, embedding_dim + 1))  # last column: b_i
        self.reg_weight = reg_weight

    def propagate(self) -> Reps:  # score = inner product of [e_u, 1] and [e_i, b_i]
        return Reps(user=torch.cat([self.user, self.user.new_ones(self.n_users, 1)], 1), item=self.item)

    def loss(self, batch, reps: Reps) -> dict:
        u, p, n = reps.user[batch["user"]], reps.item[batch["pos"]], reps.item[batch["neg"]]
        return {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
                "reg": self.reg_weight * losses.l2_reg(u, p, n)}


if __name__ == "__main__":
    import graphrec.experiment

    result = graphrec.experiment.run(model="biased-mf", dataset="synthetic", epochs=5, seed=0)
    print("test recall@20:", round(result["test"]["recall@20"], 4))
