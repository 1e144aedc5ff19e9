"""Starting the viser server safely, and converting between viser's client camera and recon3d's.

The server binds ``127.0.0.1`` unless told otherwise, refuses a port that is taken (viser alone
would silently move to the next free port), hides viser's share button (it would publish the
scene through a public relay), and serves only viser's own page: its HTTP handler answers from
viser's bundled ``client/build`` folder and rejects ``..`` segments, so no path sent by a client
reaches the workspace or the rest of the disk (``tests/test_viewer.py`` checks this).
"""

from __future__ import annotations

import contextlib
import io
import socket
import time

import numpy as np

from recon3d import geometry
from recon3d.core.errors import UserError


def server_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`UserError` unless a server could listen on ``host:port`` now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror}); use 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Same options as the asyncio server viser starts (reuse_address on POSIX), so a port in
        # TIME_WAIT passes here as it would there, and a listening socket fails both.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise UserError(f"port {port} on {host} is already in use; pass another --port "
                                "(or --port 0 for any free one), or stop the other server") from None
            raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); use --host 127.0.0.1 "
                            "and a port above 1024") from None


def start_server(host: str = "127.0.0.1", port: int = 8080):
    """A running ``viser.ViserServer`` on exactly ``host:port`` (``port=0``: any free port).

    Raises:
        UserError: the port is taken or the address is not usable.
    """
    import viser

    check_port_free(host, port)
    with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own URL banner; the CLI prints one line
        server = viser.ViserServer(host=host, port=port, verbose=False)
    if port != 0 and server.get_port() != port:  # lost a race for the port
        server.stop()
        raise UserError(f"port {port} on {host} was taken while starting; pass another --port")
    server.gui.configure_theme(control_layout="floating", control_width="medium", show_share_button=False,
                               brand_color=(40, 90, 220))
    return server


def stop_server(server) -> None:
    """Stop a viser server quietly (viser prints "Server stopped" on stdout otherwise)."""
    with contextlib.redirect_stdout(io.StringIO()):
        server.stop()


def drain(server, timeout: float) -> bool:
    """Wait until what was queued for the connected browsers has been handed to their connections.

    viser sends in windows from a background loop, and :meth:`viser.ViserServer.stop` drops what is
    still queued: the last GUI update or splats of a run would never arrive. Returns at once when no
    browser is connected; otherwise waits (at most ``timeout`` s) until every connection's cursor in
    the broadcast buffer has reached the newest message, then a moment for that last window to be
    written. Returns whether everything was handed over in time (False on a viser without these
    internals, after a fixed short wait).
    """
    if not server.get_clients():
        return True
    end = time.monotonic() + timeout
    server.flush()
    for client in server.get_clients().values():
        client.flush()
    try:
        buffer = server._websock_server.get_message_buffer()
        counter, cursors = (lambda: buffer.message_counter), (lambda: list(buffer.generator_cursors.values()))
        counter(), cursors()
    except AttributeError:  # viser's internals changed: a fixed wait instead
        time.sleep(min(0.5, timeout))
        return False
    done = False
    while time.monotonic() < end:
        newest = counter() - 1
        if all(c >= newest for c in cursors()):
            done = True
            break
        time.sleep(0.02)
    time.sleep(max(0.0, min(0.25, end - time.monotonic())))  # the last window is being serialised and sent
    return done


# ------------------------------------------------------------------------ client camera <-> recon3d
def client_world_from_cam(camera) -> np.ndarray:
    """(3, 4) world_from_cam of a viser client camera (OpenCV camera frame, like recon3d)."""
    R = geometry.rotmat_from_quat_wxyz(np.asarray(camera.wxyz, np.float64))
    return np.concatenate([R, np.asarray(camera.position, np.float64)[:, None]], axis=1)


def client_cam_from_world(camera) -> np.ndarray:
    """(3, 4) cam_from_world of a viser client camera."""
    return geometry.invert_rigid(client_world_from_cam(camera))


def render_size(camera, max_side: int) -> tuple[int, int]:
    """``(width, height)`` of the client's canvas shrunk so its longest side is at most ``max_side``."""
    w = int(getattr(camera, "image_width", 0) or 640)
    h = int(getattr(camera, "image_height", 0) or 480)
    f = min(1.0, max_side / max(w, h))
    return max(1, round(w * f)), max(1, round(h * f))


def client_K(camera, width: int, height: int) -> np.ndarray:
    """(3, 3) K (COLMAP convention, square pixels, centred) of the client's view at ``width x height``."""
    fy = (height / 2.0) / np.tan(float(camera.fov) / 2.0)
    return np.array([[fy, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


def has_camera(client) -> bool:
    """Whether the browser has reported its camera yet (viser's getters assert otherwise)."""
    return client.camera._state.update_timestamp != 0.0
