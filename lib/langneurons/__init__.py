"""langneurons: finding and controlling language-specific neurons (Kojima et al., NAACL 2024)."""

import warnings

from langneurons.base.kernel_pins import pin_cpu_kernels

pin_cpu_kernels()  # before anything imports torch: the same bits on Intel and AMD (reproducible.py)

# Inside a notebook kernel, libraries that use tqdm.auto warn that ipywidgets is missing; our
# progress bars are plain text on purpose (they are saved into executed notebooks).
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
