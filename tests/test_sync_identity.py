"""Device identity: ids with check characters (Syncthing's scheme), key files on first use."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.sync.device_id import DeviceId, luhn32
from meshdex.sync.errors import InvalidDeviceId, TrustStoreCorrupt
from meshdex.sync.identity import device_id_of_pem, existing_device_id, load_identity

# Ids produced by Syncthing itself (its docs and test data): same scheme, so they must parse.
SYNCTHING_IDS = [
    "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2",
    "YZJBJFX-RDBL7WY-6ZGKJ2D-4MJB4E7-ZATSDUY-LD6Y3L3-MLFUYWE-AEMXJAC",
]


@pytest.mark.parametrize("text", SYNCTHING_IDS)
def test_syncthing_ids_parse_and_print_back_identically(text: str) -> None:
    assert str(DeviceId.parse(text)) == text


@pytest.mark.parametrize("variant", [
    lambda t: t.lower(),
    lambda t: t.replace("-", " "),
    lambda t: t.replace("-", ""),
    lambda t: f"  {t}\n",
])
def test_harmless_variations_of_an_id_are_accepted(variant) -> None:
    text = SYNCTHING_IDS[0]
    assert DeviceId.parse(variant(text)) == DeviceId.parse(text)


def _mistype(text: str, position: int) -> str:
    chars = list(text)
    chars[position] = "A" if chars[position] != "A" else "B"
    return "".join(chars)


# Every single-character typo at these positions, in every group, is caught.
@pytest.mark.parametrize("position", [0, 6, 8, 13, 20, 27, 34, 41, 48, 54, 62])
def test_a_mistyped_character_is_rejected_by_its_check_character(position: int) -> None:
    with pytest.raises(InvalidDeviceId, match="typo"):
        DeviceId.parse(_mistype(SYNCTHING_IDS[0], position))


@pytest.mark.parametrize(("text", "message"), [
    ("", "56 characters"),
    ("P56IOI7-MZJNU2Y", "56 characters"),
    (SYNCTHING_IDS[0] + "A", "56 characters"),
    (SYNCTHING_IDS[0].replace("P", "!", 1), "not base32"),
    (42, "is text"),
])
def test_malformed_ids_are_rejected_clearly(text, message: str) -> None:
    with pytest.raises(InvalidDeviceId, match=message):
        DeviceId.parse(text)


def test_id_round_trips_through_text_for_random_digests() -> None:
    for _ in range(50):
        device_id = DeviceId(os.urandom(32))
        assert DeviceId.parse(str(device_id)) == device_id
        assert len(str(device_id)) == 63 and str(device_id).count("-") == 7


def test_luhn32_matches_the_syncthing_definition_on_a_worked_example() -> None:
    # factor alternates 1,2 from the left; addend folded mod 32; check = (32 - sum % 32) % 32
    assert luhn32("AB") == "6"  # 0*1 + 1*2 = 2 -> check codepoint 30 = "6"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_identity_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    first = load_identity(tmp_path)
    again = load_identity(tmp_path)
    assert first.device_id == again.device_id == device_id_of_pem(first.cert_pem)
    assert _mode(tmp_path / "sync") == 0o700
    assert _mode(first.key_path) == 0o600 and _mode(first.cert_path) == 0o600
    assert b"PRIVATE KEY" in first.key_pem
    assert "PRIVATE" not in repr(first) and first.key_pem.decode() not in repr(first)


def test_the_id_is_read_without_creating_one_and_a_damaged_certificate_says_so(
    tmp_path: Path,
) -> None:
    assert existing_device_id(tmp_path) is None and not (tmp_path / "sync").exists()
    identity = load_identity(tmp_path)
    assert existing_device_id(tmp_path) == identity.device_id
    identity.cert_path.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    for read in (existing_device_id, load_identity):
        with pytest.raises(TrustStoreCorrupt, match="device certificate") as caught:
            read(tmp_path)
        assert caught.value.path == str(identity.cert_path)


def test_two_data_directories_are_two_devices(tmp_path: Path) -> None:
    assert load_identity(tmp_path / "a").device_id != load_identity(tmp_path / "b").device_id


CREATE = "import sys; from meshdex.sync.identity import load_identity; " \
         "print(load_identity(sys.argv[1]).device_id)"


def test_processes_creating_the_identity_at_once_agree_on_one(tmp_path: Path) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", CREATE, str(tmp_path)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert ids == {str(load_identity(tmp_path).device_id)}
