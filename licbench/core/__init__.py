"""The core: the codec contract, the container, checkpoints, codecs from config, images, metrics."""
