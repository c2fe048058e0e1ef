"""A worker loads what its listeners use: every worker process is one more copy
of each library it imports. The web admin (jinja2) and cryptography (the CA's
renewal, ACME, signed profiles, APOP's secret box) stay out of a worker that
does not use them; a fresh interpreter shows what a worker holds once it has
served TLS (the channel binding of every TLS session is OpenSSL's work too)."""

import subprocess
import sys
import textwrap

WORKER = textwrap.dedent("""
    import asyncio, dataclasses, ssl, sys
    from hatoba.config.load import load_config
    from hatoba.net.server import Server

    config = load_config(sys.argv[1])
    config = dataclasses.replace(config, listeners={
        name: dataclasses.replace(lc, host="127.0.0.1", port=0) for name, lc in config.listeners.items()})

    async def main():
        server = Server(config, forward=lambda message: None)  # a worker other than the first
        await server.start()
        client = ssl.create_default_context(cafile=sys.argv[2])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.bound["imaps"][1], ssl=client, server_hostname="mail.example.test")
        greeting = await reader.readline()
        writer.write(b"a CAPABILITY\\r\\n")
        capability = await reader.readline()
        writer.close()
        assert greeting.startswith(b"* OK") and b"SCRAM-SHA-256-PLUS" in capability, (greeting, capability)
        loaded = [name for name in ("cryptography", "jinja2", "hatoba.web.admin.app") if name in sys.modules]
        await server.stop()
        print(" ".join(loaded) or "-")

    asyncio.run(main())
""")


def test_a_worker_other_than_the_first_serving_tls_loads_neither_cryptography_nor_the_web_admin(hatoba_home):
    done = subprocess.run([sys.executable, "-c", WORKER, str(hatoba_home.config_path), str(hatoba_home.ca_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "-", done.stdout
