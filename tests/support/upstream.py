"""A real upstream for the tests: an aiohttp app with the behaviours a proxy must carry.

Run as `python tests/support/upstream.py --port N` (or `--unix PATH`); it prints
`READY` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from aiohttp import WSMsgType, web

routes = web.RouteTableDef()


@routes.route("*", "/echo{tail:.*}")
async def echo(request: web.Request) -> web.Response:
    size = 0
    async for data in request.content.iter_any():
        size += len(data)
    body = {
        "method": request.method,
        "path": request.path_qs,
        "headers": [[k, v] for k, v in request.headers.items()],
        "body_bytes": size,
        "pid": os.getpid(),
    }
    return web.json_response(body)


@routes.post("/upload")
async def upload(request: web.Request) -> web.Response:
    """Counts a streamed body without keeping it (the 1 GiB test)."""
    size = 0
    async for data in request.content.iter_any():
        size += len(data)
    return web.json_response({"body_bytes": size})


@routes.get("/sse")
async def sse(request: web.Request) -> web.StreamResponse:
    count = int(request.query.get("n", "3"))
    gap = float(request.query.get("gap", "0.5"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index in range(count):
        await response.write(f"id: {index}\ndata: event {index}\n\n".encode())
        await asyncio.sleep(gap)
    await response.write_eof()
    return response


@routes.get("/ws")
async def ws(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for message in socket:
        if message.type == WSMsgType.TEXT:
            if message.data.startswith("close:"):
                await socket.close(code=int(message.data[6:]), message=b"bye")
                break
            await socket.send_str("echo:" + message.data)
        elif message.type == WSMsgType.BINARY:
            await socket.send_bytes(message.data)
    return socket


@routes.get("/slow")
async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(text="slow done")


@routes.get("/status/{code}")
async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if code in (204, 304):
        return web.Response(status=code)
    return web.Response(status=code, text=f"status {code}")


@routes.get("/big")
async def big(request: web.Request) -> web.StreamResponse:
    """A chunked response of `n` bytes in 64 KiB writes."""
    total = int(request.query.get("n", str(1024 * 1024)))
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    block = b"x" * 65536
    sent = 0
    while sent < total:
        piece = block[: min(65536, total - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


@routes.get("/die")
async def die(request: web.Request) -> web.StreamResponse:
    """Starts a response, then the process dies mid-body (the killed-upstream test)."""
    response = web.StreamResponse(headers={"Content-Length": "1000000"})
    await response.prepare(request)
    await response.write(b"y" * 1000)
    await asyncio.sleep(0.1)
    os._exit(1)


@routes.get("/headers")
async def headers(request: web.Request) -> web.Response:
    return web.Response(
        text="ok",
        headers={
            "Connection": "X-Hop",
            "X-Hop": "secret-hop",
            "Keep-Alive": "timeout=5",
            "X-Kept": "yes",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix")
    args = parser.parse_args()
    app = web.Application()
    app.add_routes(routes)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site: web.BaseSite
        if args.unix:
            site = web.UnixSite(runner, args.unix)
        else:
            site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = runner.addresses[0][1] if not args.unix else 0
        print("READY", json.dumps({"port": port, "unix": args.unix}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
