"""Test and benchmark tooling: never imported by the product packages (devtools/tests/test_isolation.py).

- fake_llm.py: a fake OpenAI-compatible server (tests, benchmarks; `python -m devtools.fake_llm`)
- localprocs.py: daphne, Celery workers, MariaDB and Redis as real processes on free ports
- services.py: the local MariaDB + Redis of `./dev services` (`python -m devtools.services start`)
- benchmarks/: voice_loop.py and cosyvoice_gpu.py, run by `manage.py benchmark` (docs/benchmarks.md)
- samples/: speech clips the tests and the benchmark share (`samples.path("hello.wav")`)
"""
