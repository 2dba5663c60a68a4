"""I2VGen-XL image-to-video served on Triton. A top-level folder `X/` of the checkout is the package `i2v.X`.

Without torchvision (not a dependency), transformers gives `CLIPImageProcessor` its PIL implementation, the one
this project is tested with, and says so in a warning at every export, serve and benchmark start. That warning
alone is dropped here, where every entry point passes before it imports transformers.
"""

import logging


class _PilImageProcessorNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back to" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_PilImageProcessorNotice())
