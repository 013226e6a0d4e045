"""Policy rules: the loaded model (model.py), rule conditions (conditions.py) and the YAML loader."""
