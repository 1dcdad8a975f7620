"""Batched torch envs (see DESIGN.md). Attributes are imported lazily so `import recgym` stays light."""
