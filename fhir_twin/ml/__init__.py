"""The Digital Doctor: validated clinical scores (``scores``) and learned models (``learned``).

pandas and scikit-learn may be imported here and nowhere else (setup.cfg's import contracts,
docs/architecture.md section 1); the validated scores need neither and stay pure Python: plain
values in, a ``Score`` out.
"""
