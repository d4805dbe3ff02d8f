"""Neural network models and losses for segmentation."""
