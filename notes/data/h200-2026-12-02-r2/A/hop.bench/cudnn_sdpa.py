import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
q, k, v = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    o = F.scaled_dot_product_attention(q, k, v)  # warm-up (plan build), outside the range
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("sdpa")
    o = F.scaled_dot_product_attention(q, k, v)
    torch.cuda.nvtx.range_pop()
torch.cuda.synchronize()
print("cudnn sdpa ran", tuple(o.shape), o.dtype)
