"""The zoo: models and data sets by name. May import: shift, errors, resources, atomic.

Modules: ``models`` (registry and builders), ``data`` (one record per data set, load_dataset),
``splits`` (DatasetInfo, DataSplits), ``loaders`` (batching), ``files`` (IDX/CIFAR decoding),
``cache`` (disk and in-process caches), ``errors`` (ZooError, DatasetNotFoundError).
"""
from .data import (DataSplits, DatasetInfo, DatasetNotFoundError, DatasetSource, TensorLoader, dataset_info,
                   dataset_source, find_local, list_datasets, load_dataset, normalize_name)
from .errors import ZooError
from .models import (ModelInfo, convertible_layer_names, create_model, list_models, load_weights, model_info,
                     num_convertible_layers, register_model)

__all__ = ["DataSplits", "DatasetInfo", "DatasetNotFoundError", "DatasetSource", "TensorLoader", "ZooError",
           "dataset_info", "dataset_source", "find_local", "list_datasets", "load_dataset", "normalize_name",
           "ModelInfo", "convertible_layer_names", "create_model", "list_models", "load_weights", "model_info",
           "num_convertible_layers", "register_model"]
