"""Writes the checkpoint files of this corpus (they are committed; run again only to change them).

`pickle_payload.pt` and `legacy_pickle_payload.pt` unpickle to a call of `exec` that creates the file
PAYLOAD_EXECUTED in the working directory: any loader that runs pickled code leaves that file behind.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent / "checkpoints"
MARKER = "PAYLOAD_EXECUTED"


class Payload:
    """Unpickles by calling exec on code that creates the marker file."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({MARKER!r}, 'w').close()",)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    (HERE / "not_a_checkpoint.pt").write_text("this is a text file, not a PyTorch checkpoint\n")
    (HERE / "empty.pt").write_bytes(b"")
    # A zip-format checkpoint whose data.pkl carries the payload next to a real tensor.
    torch.save({"conv1.weight": torch.zeros(1), "extra": Payload()}, HERE / "pickle_payload.pt")
    # The same payload as a bare (pre-zip) pickle: torch.load's legacy path.
    (HERE / "legacy_pickle_payload.pt").write_bytes(pickle.dumps(Payload(), protocol=2))
    # Loads with weights_only=True but holds no tensors.
    torch.save({"epochs": 3, "note": "training log, not weights"}, HERE / "not_a_state_dict.pt")
    # A real state dict of some other network.
    torch.save({"fc.weight": torch.zeros(10, 7), "fc.bias": torch.zeros(10)}, HERE / "wrong_model.pt")


if __name__ == "__main__":
    main()
