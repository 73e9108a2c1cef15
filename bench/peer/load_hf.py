"""Peer for bench_load: transformers' from_pretrained on the same folder
(written by bench_load), onto the same device, timed the same way. Prints
JSON lines like bench_load.

    python bench/peer/load_hf.py --dir /tmp/ftq-bench-load-7b --device cuda --4bit
    python bench/peer/load_hf.py --dir /tmp/ftq-bench-load-tiny --device cpu   # smoke test

--4bit loads with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
bnb_4bit_compute_dtype=bfloat16), as QLoRA does. Host memory: the peak of
RssAnon (sampled every 5 ms by a thread) minus its value before the call,
and VmHWM, as bench_load reports them.
"""
import argparse
import json
import os
import threading
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def proc_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class AnonPeak:
    def __init__(self):
        self.peak = proc_kb("RssAnon")
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, proc_kb("RssAnon"))
            time.sleep(0.005)

    def finish(self):
        self.stop = True
        self.t.join()
        return max(self.peak, proc_kb("RssAnon"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--4bit", dest="four_bit", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    kw = {"dtype": torch.bfloat16, "device_map": {"": a.device}}
    opts = ""
    if a.four_bit:
        from transformers import BitsAndBytesConfig
        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_compute_dtype=torch.bfloat16)
        opts = "load_in_4bit=true,bnb_4bit_quant_type=nf4"
    cuda = a.device.startswith("cuda")
    file_bytes = sum(os.path.getsize(os.path.join(a.dir, f)) for f in os.listdir(a.dir) if f.endswith(".safetensors"))
    shape = os.path.basename(os.path.normpath(a.dir)).replace("ftq-bench-load-", "")
    for r in range(a.repeat):
        base = proc_kb("RssAnon")
        mon = AnonPeak()
        t0 = time.perf_counter()
        m = AutoModelForCausalLM.from_pretrained(a.dir, **kw)
        if cuda:
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        peak = mon.finish()
        weights = sum(p.numel() * p.element_size() for p in m.parameters())
        dev = torch.cuda.get_device_name() if cuda else "cpu"
        print(json.dumps({"bench": "load", "impl": "transformers " + transformers.__version__, "shape": shape,
                          "device": dev, "options": opts, "repeat": r, "seconds": round(secs, 3),
                          "file_gb": round(file_bytes / 1e9, 3), "gb_per_s": round(file_bytes / 1e9 / secs, 2),
                          "device_weights_gb": round(weights / 1e9, 3),
                          "host_extra_peak_mb": round((peak - base) / 1024, 1),
                          "vm_hwm_mb": round(proc_kb("VmHWM") / 1024, 1)}), flush=True)
        del m
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
