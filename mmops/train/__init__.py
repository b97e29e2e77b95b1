"""Training: the recipe (setup -> train -> save_checkpoint) that writes a model folder."""

from mmops.train.recipe import TrainRecipe, train

__all__ = ["TrainRecipe", "train"]
