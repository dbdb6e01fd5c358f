"""A TCP proxy that puts latency on the wire: each chunk read from one side is
written to the other half a round trip later, in each direction, in order.

This models a distant relay (the server answers at once; the path is long),
unlike a sink that sleeps before each reply (a slow server): there, replies
are late whatever the client does; here, a client that sends several
commands in one write (pipelining) pays the round trip once for all of them.
It runs in a process of its own, so its CPU is not the client's.
"""

import asyncio


async def _pump(reader, writer, delay):
    """Copy reader to writer, each chunk ``delay`` seconds after it came."""
    loop = asyncio.get_running_loop()
    chunks = asyncio.Queue()

    async def forward():
        while True:
            due, chunk = await chunks.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                break
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(forward())
    try:
        while True:
            chunk = await reader.read(65536)
            chunks.put_nowait((loop.time() + delay, chunk or None))
            if not chunk:
                break
    except OSError:
        chunks.put_nowait((loop.time() + delay, None))
    try:
        await sender
    except OSError:
        pass


async def _serve(target, half, ready):
    host, port = target

    async def connected(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pump(client_reader, server_writer, half), _pump(server_reader, client_writer, half)
        )

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    ready.send("127.0.0.1:%d" % server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def main(conn, target, rtt):
    """Process entry: proxy to ``target`` ("host:port") with ``rtt`` seconds
    of round trip; sends the proxy's "host:port" over ``conn``."""
    host, _, port = target.rpartition(":")
    asyncio.run(_serve((host, int(port)), rtt / 2.0, conn))


class WireProxy:
    """``WireProxy(ctx, "127.0.0.1:8025", 0.02).server``; ``stop()`` ends it."""

    def __init__(self, ctx, target, rtt):
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=main, args=(child, target, rtt), daemon=True)
        self.process.start()
        self.server = parent.recv()

    def stop(self):
        self.process.terminate()
        self.process.join(10)
