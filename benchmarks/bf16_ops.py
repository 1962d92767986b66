"""The three regions of a SAND-a training step that mixed precision changes, timed alone at Clothing
shapes, float32 and bf16 alternating in one process (medians): the projection of the 4096-d content
features into all of Z_m's consumers (forward + backward), SoloSim over all 23,033 items (forward +
backward, fused), and CLUB's fitting loss on 46,066 codes (10 of its 50 steps per batch).

    python benchmarks/bf16_ops.py [REPEATS]      # -> prints; the results go into bf16_speed.md by hand
"""
import torch, time, statistics, json, sys
torch.set_num_threads(1)
from torch import nn
import torch.nn.functional as F
from graphrec import losses
from graphrec.nn import precision
from graphrec.nn.linear_chain import linear_consumers
from graphrec.nn.mi import CLUB
torch.manual_seed(0)
N, D = 23033, 4096
x = torch.randn(N, D)
proj = nn.Linear(D, D)
mlp0, head, cg, cq = nn.Linear(D, 256), nn.Linear(D // 2, 64), nn.Linear(D // 2, 32), nn.Linear(D // 2, 32)
cons = [(mlp0, slice(None)), (head, slice(0, D // 2)), (cg, slice(0, D // 2)), (cq, slice(D // 2, None))]
owner = nn.Module()
def projection():
    with precision.region():
        xx = precision.lowered(owner, "x", x)
        outs = linear_consumers(xx, proj, cons)
    sum(o.float().sum() for o in outs).backward()
q0 = F.normalize(torch.randn(N, 32), dim=1); k0 = F.normalize(torch.randn(N, 32) + q0, dim=1)
def solosim():
    q = q0.clone().requires_grad_(); k = k0.clone().requires_grad_()
    losses.solosim(q, k, 0.2).backward()
club = CLUB(32, 32, 16); cx, cy = torch.randn(2 * N, 32), torch.randn(2 * N, 32)
def club_steps(n=10):
    for _ in range(n):
        club.zero_grad(); club.learning_loss(cx, cy).backward()
res = {}
ops = {"projection fwd+bwd (23,033 x 4096 -> 384)": projection, "SoloSim fwd+bwd (23,033^2 x 32)": solosim,
       "CLUB fitting x10 (46,066 x 32)": club_steps}
for name, f in ops.items():
    for dt in (None, torch.bfloat16):
        with precision.policy(dt, "cpu"):
            f()  # warm
for rep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    for name, f in ops.items():
        for dt in (None, torch.bfloat16):
            with precision.policy(dt, "cpu"):
                t0 = time.perf_counter(); f(); res.setdefault(name, {}).setdefault(str(dt), []).append(time.perf_counter() - t0)
    print(rep, {n: {k: round(statistics.median(v), 3) for k, v in d.items()} for n, d in res.items()}, flush=True)
json.dump(res, open("bf16_ops.json", "w"))
