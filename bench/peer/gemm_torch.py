"""Peer for bench_gemm: the same shapes through torch.matmul (cuBLAS), on the
same GPU in the same run. Prints JSON lines like bench_gemm."""
import json

import torch

shapes = [(2048, 4096, 4096), (2048, 11008, 4096), (2048, 4096, 11008), (2048, 64, 4096), (2048, 4096, 64)]
dtypes = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
torch.backends.cuda.matmul.allow_tf32 = False  # libftq's f32 GEMM is true fp32
dev = torch.device("cuda")
for name, dt in dtypes.items():
    for m, n, k in shapes:
        a = [torch.rand(m, k, device=dev, dtype=dt) - 0.5 for _ in range(3)]
        b = [torch.rand(k, n, device=dev, dtype=dt) - 0.5 for _ in range(3)]
        times = []
        for r in range(-2, 50):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(a[r % 3], b[r % 3])
            end.record()
            torch.cuda.synchronize()
            if r >= 0:
                times.append(start.elapsed_time(end))
        times.sort()
        med = times[len(times) // 2]
        print(json.dumps({"bench": "gemm", "device": torch.cuda.get_device_name(), "dtype": name, "m": m, "n": n,
                          "k": k, "median_ms": round(med, 4), "tflops": round(2 * m * n * k / (med * 1e9), 2)}))
