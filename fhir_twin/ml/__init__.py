"""The Digital Doctor's models: validated clinical scores (``scores``) and, later, learned models.

pandas and scikit-learn may be imported here and nowhere else (DESIGN.md, "Layers"); the
validated scores need neither and stay pure Python: plain values in, a ``Score`` out.
"""
