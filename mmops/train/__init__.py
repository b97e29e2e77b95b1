"""Training: the recipe (setup -> train -> save_checkpoint) and the model folder format."""

from mmops.train.checkpoint import LoadedModel, load_model_dir
from mmops.train.recipe import TrainRecipe, train

__all__ = ["LoadedModel", "TrainRecipe", "load_model_dir", "train"]
