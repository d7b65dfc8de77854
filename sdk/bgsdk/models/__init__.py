"""Package data: ``default.onnx``, the model used when none is named (``bgsdk run``, ``bgsdk.Segmenter()``).

Release builds place the shipped model here; a source checkout has none
(:func:`bgsdk._default_model.default_model_path` then says how to get one).
"""
