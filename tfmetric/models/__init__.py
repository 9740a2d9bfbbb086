"""Backbones (InceptionV1, torchvision's and Keras' ResNet50), the paper's embedding head and the training model."""

from tfmetric.models.backbones import BACKBONES, backbone_preprocessing, build_backbone, get_backbone, resolve_weights
from tfmetric.models.embedding import build_embedding_model, build_training_model, head_variables
from tfmetric.models.inception_v1 import InceptionV1, load_slim_checkpoint, slim_variable_map
from tfmetric.models.resnet50 import ResNet, ResNet50Backbone, load_torchvision_state_dict
from tfmetric.models.resnet50_keras import KerasResNet50Backbone
from tfmetric.models.torch_state_dict import UnsafePickleError, read_state_dict
from tfmetric.models.weights import (
    CONVERTERS,
    WeightsNotFoundError,
    convert_slim_checkpoint,
    convert_torchvision_state_dict,
    convert_weights,
)

__all__ = [
    "BACKBONES",
    "CONVERTERS",
    "InceptionV1",
    "KerasResNet50Backbone",
    "ResNet",
    "ResNet50Backbone",
    "UnsafePickleError",
    "WeightsNotFoundError",
    "backbone_preprocessing",
    "build_backbone",
    "build_embedding_model",
    "build_training_model",
    "convert_slim_checkpoint",
    "convert_torchvision_state_dict",
    "convert_weights",
    "get_backbone",
    "head_variables",
    "load_slim_checkpoint",
    "load_torchvision_state_dict",
    "read_state_dict",
    "resolve_weights",
    "slim_variable_map",
]
