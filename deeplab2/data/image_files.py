"""Reading image files for the converters (no TensorFlow: converter workers
import this)."""

from PIL import Image


def open_image(path: str) -> Image.Image:
    """Opens and fully decodes an image, naming the file on failure."""
    try:
        image = Image.open(path)
        image.load()  # Header-only opens would let a truncated file through.
    except Exception as error:  # PIL raises many types for bad data.
        raise ValueError(f'Cannot read image {path}: {error}') from error
    return image
