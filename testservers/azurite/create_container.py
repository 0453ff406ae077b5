"""Creates a blob container in a running Azurite: one Shared Key signed PUT, standard library only.

object_store cannot create containers, so scripts/servers.sh makes the test container with this.
Usage: create_container.py URL ACCOUNT KEY CONTAINER   (URL: http://127.0.0.1:PORT)
"""

import base64
import hashlib
import hmac
import sys
import urllib.request
from email.utils import formatdate


def main() -> None:
    url, account, key, container = sys.argv[1:5]
    date = formatdate(usegmt=True)
    version = "2021-08-06"
    # Shared Key string to sign: the verb, eleven standard headers (all empty here), the
    # x-ms-* headers, then the resource; path-style URLs repeat the account in the resource.
    string_to_sign = (
        "PUT\n" + "\n" * 11
        + f"x-ms-date:{date}\nx-ms-version:{version}\n"
        + f"/{account}/{account}/{container}\nrestype:container"
    )
    mac = hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256)
    request = urllib.request.Request(
        f"{url}/{account}/{container}?restype=container",
        method="PUT",
        headers={
            "x-ms-date": date,
            "x-ms-version": version,
            "Authorization": f"SharedKey {account}:{base64.b64encode(mac.digest()).decode()}",
            "Content-Length": "0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 201:
            sys.exit(f"creating container {container}: HTTP {response.status}")


if __name__ == "__main__":
    main()
