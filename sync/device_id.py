"""Device ids: the SHA-256 of a device's certificate (DER), written for people to read and type.

The text form follows Syncthing's scheme: the 32 bytes in RFC 4648 base32 without padding
(52 characters), cut into four groups of 13, each followed by a Luhn mod 32 check character,
then shown as eight groups of seven joined by dashes::

    MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD

The check character is Syncthing's variant (factor starts at 1 on the first character), so a
single mistyped character, and most swaps of neighbours, are caught. Parsing accepts lower case,
spaces instead of dashes, and the look-alikes 0/1/8 for O/I/B.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from meshdex.sync.errors import InvalidDeviceId

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
DIGEST_BYTES = 32
GROUP_CHARS = 13  # base32 characters per check character
DISPLAY_GROUP_CHARS = 7
TEXT_CHARS = 56  # 52 base32 characters + 4 check characters
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B", " ": None, "-": None})


def luhn32(text: str) -> str:
    """The check character for ``text`` (characters of ``ALPHABET``), Syncthing's variant."""
    factor, total, n = 1, 0, len(ALPHABET)
    for char in text:
        codepoint = ALPHABET.find(char)
        if codepoint < 0:
            raise InvalidDeviceId(f"character {char!r} is not base32")
        addend = factor * codepoint
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return ALPHABET[(n - total % n) % n]


@dataclass(frozen=True, order=True)
class DeviceId:
    """A device's identity: 32 bytes, the SHA-256 of its certificate's DER encoding."""

    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_BYTES:
            raise InvalidDeviceId(f"a device id is {DIGEST_BYTES} bytes, got {len(self.digest)}")

    @classmethod
    def from_certificate_der(cls, der: bytes) -> DeviceId:
        return cls(hashlib.sha256(der).digest())

    @classmethod
    def parse(cls, text: str) -> DeviceId:
        """Parse the text form; a wrong length, character or check character raises
        ``InvalidDeviceId`` saying which group is wrong."""
        if not isinstance(text, str):
            raise InvalidDeviceId(f"a device id is text, got {type(text).__name__}")
        compact = text.strip().upper().translate(_LOOKALIKES)
        if len(compact) != TEXT_CHARS:
            raise InvalidDeviceId(
                f"a device id has {TEXT_CHARS} characters (without dashes), got {len(compact)}",
                hint="copy it again from `meshdex id` on the other device")
        body = []
        for group in range(TEXT_CHARS // (GROUP_CHARS + 1)):
            start = group * (GROUP_CHARS + 1)
            chunk, check = compact[start:start + GROUP_CHARS], compact[start + GROUP_CHARS]
            if luhn32(chunk) != check:
                raise InvalidDeviceId(
                    f"device id {text.strip()!r} has a typo in characters "
                    f"{start + 1}-{start + GROUP_CHARS + 1} (check character mismatch)",
                    hint="copy it again from `meshdex id` on the other device")
            body.append(chunk)
        return cls(base64.b32decode("".join(body) + "====")[:DIGEST_BYTES])

    def __str__(self) -> str:
        plain = base64.b32encode(self.digest).decode().rstrip("=")
        checked = "".join(
            plain[i:i + GROUP_CHARS] + luhn32(plain[i:i + GROUP_CHARS])
            for i in range(0, len(plain), GROUP_CHARS)
        )
        return "-".join(checked[i:i + DISPLAY_GROUP_CHARS]
                        for i in range(0, len(checked), DISPLAY_GROUP_CHARS))

    @property
    def short(self) -> str:
        """The first group, enough to tell a person's devices apart in listings."""
        return str(self)[:DISPLAY_GROUP_CHARS]
