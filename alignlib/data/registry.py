"""The registry of the paper's image data sets: their published files, where to download
them, and their published checksums with the place each checksum was found.

:data:`DATASETS` holds KMNIST, CIFAR-10 and ImageNet 32x32 (read from files, see
:mod:`alignlib.data.readers`); :data:`OFFLINE_DATASETS` the two sets that need no files
(:mod:`alignlib.data.synthetic`); :data:`DATASET_NAMES` every name
:func:`alignlib.data.load_dataset` accepts.
"""

from __future__ import annotations

import dataclasses

__all__ = ["RemoteFile", "DatasetInfo", "DATASETS", "OFFLINE_DATASETS", "DATASET_NAMES", "dataset_info"]


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset.

    Attributes:
        filename: the published file name (also its name in the cache folder).
        sha256, md5: published hex digests, or ``None`` where none was found. The
            strongest one present is checked (sha256 before md5).
        size: published size in bytes, or ``None``; informational only.
        source: where the checksums were found (repository and path).
    """

    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    source: str = ""

    @property
    def checksum(self) -> tuple[str, str] | None:
        """``(algorithm, hexdigest)`` to verify against, or ``None`` if unverifiable."""
        if self.sha256:
            return ("sha256", self.sha256.lower())
        if self.md5:
            return ("md5", self.md5.lower())
        return None


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A dataset's published files and where to get them.

    ``base_url + filename`` is each file's download URL.
    """

    name: str
    title: str
    base_url: str
    files: tuple[RemoteFile, ...]
    homepage: str
    note: str = ""
    public_download: bool = True  # False: base_url serves the files only after a login

    def file(self, filename: str) -> RemoteFile:
        for f in self.files:
            if f.filename == filename:
                return f
        known = [f.filename for f in self.files]
        raise KeyError(f"{self.name} has no file {filename!r}; known: {known}")

    def url(self, filename: str, base_url: str | None = None) -> str:
        return (base_url or self.base_url).rstrip("/") + "/" + filename


# Checksum provenance. No checksum below was computed here (these machines cannot reach the
# datasets' servers); each was copied from the public file named next to it.
#
# KMNIST sha256 + sizes: tensorflow/datasets, tensorflow_datasets/url_checksums/kmnist.txt
#   (commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5), listed for the http:// URLs of the
#   same files.
# KMNIST md5: pytorch/vision, torchvision/datasets/mnist.py, class KMNIST `resources`
#   (commit 01977a187961243eaf66ead246fd92a5c6c7ccfc). Kept for reference; sha256 is checked.
_KMNIST_SRC = (
    "sha256/size: tensorflow/datasets tensorflow_datasets/url_checksums/kmnist.txt; "
    "md5: pytorch/vision torchvision/datasets/mnist.py (KMNIST.resources)"
)
# CIFAR-10 binary sha256 + size: tensorflow/datasets,
#   tensorflow_datasets/url_checksums/cifar10.txt (commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5).
# CIFAR-10 binary md5: the dataset page https://www.cs.toronto.edu/~kriz/cifar.html
#   ("CIFAR-10 binary version ... c32a1d4ab5d03f1284b67883e8d87530"), as quoted in a stored copy
#   of that page and hard-coded by several public loaders (their repositories could not be
#   named through the search index); kept for reference, sha256 is checked.
_CIFAR_SRC = (
    "sha256/size: tensorflow/datasets tensorflow_datasets/url_checksums/cifar10.txt; "
    "md5: https://www.cs.toronto.edu/~kriz/cifar.html"
)
# ImageNet 32x32 (npz release): no checksum with a citable source was found. Public loaders
# hard-code per-npz md5s (e.g. train_data_batch_1.npz 464fde20de6eb44c28cc1a8c11544bb1,
# val_data.npz a8c04a389f2649841fb7a01720da9dd9), but their repositories could not be
# identified, one copy has a 33-digit typo, and two copies disagree on the zip's md5
# (b0d308fb... vs 3e3d1b7d...). Unverified digests are not used: these files load with an
# UnverifiedFileWarning.
_IMAGENET_SRC = "none found (see comment in alignlib/data/registry.py)"

IMAGENET_TRAIN_NPZ = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
IMAGENET_VAL_NPZ = "val_data.npz"
IMAGENET_TRAIN_ZIP = "Imagenet32_train_npz.zip"
IMAGENET_VAL_ZIP = "Imagenet32_val_npz.zip"

#: The datasets this module can load, by name.
DATASETS: dict[str, DatasetInfo] = {
    "kmnist": DatasetInfo(
        name="kmnist",
        title="Kuzushiji-MNIST",
        base_url="https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        homepage="http://codh.rois.ac.jp/kmnist/",
        files=(
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                sha256="51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                md5="bdb82020997e1d708af4cf47b453dcf7",
                size=18165135,
                source=_KMNIST_SRC,
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                sha256="e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                md5="e144d726b3acfaa3e44228e80efcd344",
                size=29497,
                source=_KMNIST_SRC,
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                sha256="edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                md5="5c965bf0a639b31b8f53240b1b52f4d7",
                size=3041136,
                source=_KMNIST_SRC,
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                sha256="20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                md5="7320c461ea6c1c855c0b718fb2a4b134",
                size=5120,
                source=_KMNIST_SRC,
            ),
        ),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        title="CIFAR-10 (binary version)",
        base_url="https://www.cs.toronto.edu/~kriz/",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files=(
            RemoteFile(
                "cifar-10-binary.tar.gz",
                sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                md5="c32a1d4ab5d03f1284b67883e8d87530",
                size=170052171,
                source=_CIFAR_SRC,
            ),
        ),
    ),
    "imagenet32": DatasetInfo(
        name="imagenet32",
        title="Downsampled ImageNet 32x32 (Chrabaszcz et al. 2017, npz release)",
        base_url="https://image-net.org/data/downsample/",
        homepage="https://patrykchrabaszcz.github.io/Imagenet32/",
        public_download=False,
        note=(
            "image-net.org serves these files only to registered users, so download=True "
            "may get a login page (caught by a zip-format check, not by a checksum); "
            "download the zips in a browser and put them, or the npz files they contain, "
            "in the cache folder."
        ),
        files=tuple(
            RemoteFile(name, source=_IMAGENET_SRC)
            for name in (IMAGENET_TRAIN_ZIP, IMAGENET_VAL_ZIP, *IMAGENET_TRAIN_NPZ, IMAGENET_VAL_NPZ)
        ),
    ),
}


#: The data sets that need no files, with what they are.
OFFLINE_DATASETS: dict[str, str] = {
    "digits": "scikit-learn's handwritten digits (installed with scikit-learn)",
    "add": "the synthetic Add task (generated)",
}

#: Names accepted by :func:`alignlib.data.load_dataset`.
DATASET_NAMES = (*OFFLINE_DATASETS, *DATASETS)

#: Files each loader reads with its default ``split``, and those ``split="test"`` adds.
NEEDED = {
    "kmnist": {"heldout": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    "cifar10": {"heldout": ("cifar-10-binary.tar.gz",), "test": ()},
}
DEFAULT_SPLIT = {"kmnist": "heldout", "cifar10": "heldout", "imagenet32": "test"}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a data set read from files; ``ValueError`` naming the valid
    names for any other name."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown dataset {name!r}; the registry has {sorted(DATASETS)}.") from None
