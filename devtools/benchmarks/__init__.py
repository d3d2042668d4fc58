"""The benchmarks behind `manage.py benchmark` (docs/benchmarks.md): voice_loop.py (the voice loop on
this machine's CPUs) and cosyvoice_gpu.py (`--gpu`: CosyVoice2 on a GPU)."""
