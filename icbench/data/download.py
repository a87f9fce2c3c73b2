"""`icbench data NAME --root DIR`: download the datasets icbench reads from disk (CIFAR-10, CIFAR-100).

torchvision's downloader fetches the archive, checks its MD5 and unpacks it into the layout the
`cifar10`/`cifar100` datasets read (`ROOT/cifar-10-batches-py/`, `ROOT/cifar-100-python/`). Nothing
else in icbench ever downloads: a study only reads what is on disk.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from icbench.errors import IcbenchError

#: name -> (archive URL, archive file name, MD5, folder it unpacks to); the URLs and sums torchvision uses.
SOURCES: dict[str, tuple[str, str, str, str]] = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
    ),
}  # fmt: skip
#: Seconds a connection may stall before the download is given up.
TIMEOUT_S = 30.0


class DownloadError(IcbenchError):
    """The archive could not be fetched (no network, server unreachable, a corrupt archive)."""


def download(
    name: str, root: str | Path, *, url: str | None = None, echo: Callable[[str], None] = print
) -> Path:
    """Download and unpack dataset `name` into `root`; nothing is fetched when it is already there.

    Args:
        name: `cifar10` or `cifar100`.
        root: the folder a study's `dataset.root` names.
        url: a mirror of the archive (default: the dataset's home page).

    Returns:
        The folder holding the unpacked batches.

    Raises:
        IcbenchError: an unknown name.
        DownloadError: the download failed; the message says where to put the archive by hand.
    """
    if name not in SOURCES:
        raise IcbenchError(f"icbench downloads only {', '.join(SOURCES)}; got {name!r}")
    home, filename, md5, folder = SOURCES[name]
    root = Path(root).expanduser()
    target = root / folder
    if target.is_dir() and any(target.iterdir()):
        echo(f"{target} already exists: nothing downloaded")
        return target
    from torchvision.datasets.utils import download_and_extract_archive

    source = url or home
    echo(f"downloading {source} into {root}/ ...")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(source, str(root), filename=filename, md5=md5, remove_finished=True)
    except Exception as e:  # URLError, HTTPError, timeouts, a failed MD5: the same answer for the user
        reason = getattr(e, "reason", None) or e
        raise DownloadError(
            f"cannot download {name} from {source} ({type(e).__name__}: {reason}); on a machine without "
            f"internet, copy {filename} (MD5 {md5}) from one that has it and unpack it into {root}/ "
            f"(tar xzf {filename} -C {root})"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return target
