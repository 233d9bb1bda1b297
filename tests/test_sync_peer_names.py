"""Every command that takes a peer accepts its device id or its name, through one resolver
(``TrustStore.resolve``), as ``build --on`` did: ``peer rm|share|unshare`` and ``sync --peer``
refused a name with "a device id has 56 characters" (exit 2). A name two peers share is
refused listing both ids, an unknown one naming the paired peers, a mistyped id naming its
typo; the CLI runs embedded on a data directory whose peers are real certificates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import TrustStore, make_peer
from sync_support import free_port


def _meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture
def paired(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """A data directory paired with "desktop" (nothing listens at its address) and with two
    devices both called "laptop" (a peers file from before pairing refused a taken name);
    each name's device ids."""
    data_dir = tmp_path / "here"
    assert _meshdex(data_dir, "init").returncode == 0
    trust, ids = TrustStore(data_dir), {}
    for index, name in enumerate(("desktop", "laptop", "laptop-2")):
        identity = load_identity(tmp_path / f"device-{index}")
        peer = trust.add(make_peer(cert_pem=identity.cert_pem.decode(), name=name,
                                   addresses=[f"127.0.0.1:{free_port()}"],
                                   collections=["default"], mode="read-write"))
        ids.setdefault(name.removesuffix("-2"), []).append(peer.device_id)
    trust.path.write_text(trust.path.read_text().replace('"laptop-2"', '"laptop"'))
    return data_dir, ids


def test_a_peers_name_is_accepted_by_every_command_that_takes_a_peer(paired) -> None:
    data_dir, ids = paired
    [desktop] = ids["desktop"]
    shared = _meshdex(data_dir, "peer", "share", "desktop", "papers")
    assert shared.returncode == 0, shared.stderr
    assert f"sharing default, papers with desktop ({desktop})" in shared.stdout
    unshared = _meshdex(data_dir, "peer", "unshare", "desktop", "papers")
    assert unshared.returncode == 0, unshared.stderr
    synced = _meshdex(data_dir, "sync", "--peer", "desktop", "--json")
    assert synced.returncode == 12, synced.stderr  # the name was taken: nothing listens there
    [report] = json.loads(synced.stdout)
    assert report["peer"] == desktop and "unreachable" in report["error"]
    removed = _meshdex(data_dir, "peer", "rm", "desktop")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"removed peer desktop ({desktop})\n"
    assert [p.name for p in TrustStore(data_dir).all()] == ["laptop", "laptop"]


@pytest.mark.parametrize(("args", "code", "words"), [
    (("peer", "rm", "laptop"), 2, ["2 paired peers are called 'laptop'", "give the device id"]),
    (("sync", "--peer", "laptop"), 2, ["2 paired peers are called 'laptop'"]),
    (("peer", "share", "nobody", "papers"), 3,
     ["no paired peer has the id or name 'nobody' (paired: 'desktop', 'laptop')",
      "`meshdex peers` lists"]),
    (("sync", "--peer", "nobody"), 3, ["no paired peer has the id or name 'nobody'"]),
    (("peer", "rm", "X" * 56), 2, ["typo in characters"]),
], ids=["ambiguous-rm", "ambiguous-sync", "unknown-share", "unknown-sync", "mistyped-id"])
def test_a_name_that_names_no_single_peer_is_refused_saying_which_there_are(
        paired, args, code, words) -> None:
    data_dir, ids = paired
    before = TrustStore(data_dir).path.read_bytes()
    refused = _meshdex(data_dir, *args)
    assert refused.returncode == code, refused.stderr
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    for expected in words:
        assert expected in refused.stderr
    if "laptop" in args:
        assert all(device_id in refused.stderr for device_id in ids["laptop"])
    assert TrustStore(data_dir).path.read_bytes() == before, "nothing changes"
