"""The zoo: models and data sets by name. May import: shift."""
from .data import (DataSplits, DatasetInfo, DatasetNotFoundError, TensorLoader, dataset_info, find_local,
                   list_datasets, load_dataset, normalize_name)
from .models import (ModelInfo, create_model, list_models, load_weights, model_info, num_convertible_layers,
                     register_model)

__all__ = ["DataSplits", "DatasetInfo", "DatasetNotFoundError", "TensorLoader", "dataset_info", "find_local",
           "list_datasets", "load_dataset", "normalize_name", "ModelInfo", "create_model", "list_models",
           "load_weights", "model_info", "num_convertible_layers", "register_model"]
