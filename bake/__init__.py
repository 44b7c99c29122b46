"""Bake: fold per-head gains into ``o_proj`` columns, stream a checkpoint, verify it.

Modules: ``fold`` (the math), ``clone`` (copy-on-write file copies),
``bake`` (the streaming writer), ``hook`` (the runtime reference),
``verify_tensors`` / ``verify_model`` (the two verification levels), ``cli``.
"""
