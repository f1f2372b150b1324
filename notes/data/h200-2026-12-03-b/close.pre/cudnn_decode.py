import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
q = torch.randn(1, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
k, v = (torch.randn(1, 8, 131072, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)  # warm-up (plan build)
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("sdpa")
    o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.cuda.nvtx.range_pop()
torch.cuda.synchronize()
print("cudnn decode ran", tuple(o.shape), o.dtype)
