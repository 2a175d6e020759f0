"""Browser stand-ins: a user who clicks Allow, clicks Deny, or closes the window.

Each takes the authorization URL a client opens. They are also a command usable as the
standard `BROWSER` variable:

    BROWSER="python -m snworker.testing.browser approve %s"
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Final, Literal
from urllib.parse import urljoin

import requests

TIMEOUT: Final = 10.0
Choice = Literal["allow", "deny"]


class ConsentForm(HTMLParser):
    """The first form of a page: its action, fields, and submit buttons by label."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, tuple[str, str]] = {}
        self._in_form = False
        self._form_seen = False
        self._button: tuple[str, str] | None = None
        self._label: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self._form_seen:
            self._in_form = self._form_seen = True
            self.action = attributes.get("action", "")
        elif self._in_form and tag == "input" and attributes.get("type", "text") != "submit":
            if "name" in attributes:
                self.fields[attributes["name"]] = attributes.get("value", "")
        elif self._in_form and tag in ("button", "input"):
            pair = (attributes.get("name", ""), attributes.get("value", ""))
            if tag == "input":
                self.buttons[attributes.get("value", "").strip().lower()] = pair
            else:
                self._button, self._label = pair, []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._label.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons["".join(self._label).strip().lower()] = self._button
            self._button = None
        elif tag == "form":
            self._in_form = False


def _visit_redirect(response: requests.Response) -> bool:
    """Open the redirect target (the client's loopback listener) without following further."""
    location = response.headers.get("Location")
    if not response.is_redirect or not location:
        return _failed(f"the instance answered {response.status_code} instead of sending the "
                       "browser back to the application")
    requests.get(urljoin(response.url, location), allow_redirects=False, timeout=TIMEOUT)
    return True


def _consent(url: str, choice: Choice) -> bool:
    try:
        page = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
        if page.is_redirect:
            # The instance decided without asking (consent already given, or refused).
            return _visit_redirect(page)
        form = ConsentForm()
        form.feed(page.text)
        button = form.buttons.get(choice)
        if page.status_code != 200 or form.action is None or button is None:
            return _failed(f"the consent page answered {page.status_code}: "
                           f"{_text_of(page.text)}")
        data = dict(form.fields)
        if button[0]:
            data[button[0]] = button[1]
        answer = requests.post(
            urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=TIMEOUT
        )
        return _visit_redirect(answer)
    except requests.RequestException as exc:
        return _failed(f"could not load the consent page ({type(exc).__name__})")


def _failed(reason: str) -> bool:
    """Say why on stderr, as a browser would show it; False."""
    print(f"snworker browser stand-in: {reason}", file=sys.stderr, flush=True)
    return False


def _text_of(html: str) -> str:
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return text[:200] or "(an empty page)"


def approve(url: str) -> bool:
    """Click Allow on the consent page and follow the redirect to the client's listener."""
    return _consent(url, "allow")


def deny(url: str) -> bool:
    """Click Deny on the consent page and follow the redirect to the client's listener."""
    return _consent(url, "deny")


def ignore(url: str) -> bool:
    """Close the window: do nothing."""
    return True


ACTIONS: Final = {"approve": approve, "deny": deny, "ignore": ignore}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m snworker.testing.browser approve|deny|ignore URL`; 0 on success."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2 or arguments[0] not in ACTIONS:
        print("usage: python -m snworker.testing.browser approve|deny|ignore URL", file=sys.stderr)
        return 2
    return 0 if ACTIONS[arguments[0]](arguments[1]) else 1


if __name__ == "__main__":
    sys.exit(main())
