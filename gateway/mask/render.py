"""Headless rendering of the mask mesh with moderngl (EGL: a GPU where present, llvmpipe otherwise).

One OpenGL context per process, created once. A face is rendered only over its own bounding
region of the image, in an orthographic projection whose units are the image's pixels, with a
depth test, per-vertex normals, Lambert + ambient shading of a neutral skin albedo (never the
patient's skin) and 4x multisampling. Per-vertex colours darken the brows, the eyelid margins
and the eye sockets and tint the lips, so that the mask reads as a face to people and to
landmark models.
"""

from __future__ import annotations

from typing import Any

import cv2
import moderngl
import numpy as np

from gateway.mask.topology import (
    LEFT_BROW,
    LEFT_EYE_OPENING,
    LIP_SURFACE,
    MESH_VERTEX_COUNT,
    RIGHT_BROW,
    RIGHT_EYE_OPENING,
    TRIANGLES,
    within_hops,
)

SAMPLES = 4
#: Pixels by which a face's region reaches beyond its mask's vertices: the mesh's antialiased
#: edge falls inside it.
REGION_MARGIN = 2
#: Longest side a face is rendered at; larger faces are rendered at this size and scaled up
#: (the shading is smooth, and the eyes are drawn at full resolution by the compositor).
MAX_RENDER_SIDE = 768
#: Settings of the OpenGL context: headless, through EGL. (A dict of ``Any`` because moderngl's
#: type stub declares each keyword setting of ``create_standalone_context`` as a dict.)
CONTEXT_SETTINGS: dict[str, Any] = {"backend": "egl"}
#: The multisampled framebuffer grows in steps of this many pixels, so that most faces reuse it.
FRAMEBUFFER_STEP = 256
AMBIENT = 0.45
#: Direction towards the light: from the front and somewhat above (y is down, z away).
LIGHT = np.array([0.0, -0.35, -1.0]) / np.linalg.norm([0.0, -0.35, -1.0])
BROW_SHADE = 0.55
LID_MARGIN_SHADE = 0.6
#: The lips' albedo is the mean of the skin's and this. A lighter (196, 124, 124) moved dlib's eye
#: points on the mask a little less, but with it Face Mesh let the other eye's gaze follow one
#: moved iris by 45% of its move on the astronaut clip (over the 35% strabismus bound): the
#: mouth's contrast steers how the eyes are read (docs/results.md).
LIP_TINT = np.array([168.0, 92.0, 92.0])
#: The ring of skin one mesh edge away from the lid margins (eyelids, the skin at the corners)
#: is this much darker, as an eye socket is: Face Mesh reads the lids partly from it, and finds
#: the eyelid points on the mask closer to the photo's with the ring than with the skin as light
#: as the cheek up to the margins (docs/results.md). Darker rings (0.65, or a second ring) made
#: it pick the wrong one of two masked faces in a photo.
SOCKET_SHADE = 0.75

_VERTEX_SHADER = """
#version 330
uniform vec2 origin;
uniform vec2 size;
uniform vec2 depth;
in vec3 position;
in vec3 normal;
in vec3 colour;
centroid out vec3 v_normal;
centroid out vec3 v_colour;
void main() {
    vec2 xy = (position.xy - origin) / size * 2.0 - 1.0;
    float z = (position.z - depth.x) / (depth.y - depth.x) * 2.0 - 1.0;
    gl_Position = vec4(xy, z, 1.0);
    v_normal = normal;
    v_colour = colour;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 light;
uniform float ambient;
centroid in vec3 v_normal;
centroid in vec3 v_colour;
out vec4 colour;
void main() {
    vec3 n = normalize(v_normal);
    float lambert = max(dot(n, light), 0.0);
    colour = vec4(v_colour * (ambient + (1.0 - ambient) * lambert), 1.0);
}
"""


def vertex_normals(vertices: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, each facing the camera (negative z)."""
    a, b, c = (vertices[TRIANGLES[:, i]] for i in range(3))
    faces = np.cross(b - a, c - a)
    faces *= np.where(faces[:, 2:3] > 0, -1.0, 1.0)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, TRIANGLES[:, i], faces)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)


def vertex_colours(skin_albedo: tuple[int, int, int]) -> np.ndarray:
    """Per-vertex albedo in [0, 1]: skin, darker brows, lid margins and eye sockets, tinted lips."""
    skin = np.array(skin_albedo, dtype=np.float64)
    colours = np.tile(skin, (MESH_VERTEX_COUNT, 1))
    colours[np.concatenate([RIGHT_BROW, LEFT_BROW])] *= BROW_SHADE
    rims = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING])
    colours[rims] *= LID_MARGIN_SHADE
    colours[np.setdiff1d(within_hops(rims, 1), rims)] *= SOCKET_SHADE
    # The whole lip surface, not its two contours alone: with the rings between them left skin
    # coloured the lips were pale bands with a pink rim, which Face Mesh read as teeth between
    # parted lips on a closed mouth (docs/results.md).
    colours[LIP_SURFACE] = (skin + LIP_TINT) / 2.0
    return colours / 255.0


class MaskRenderer:
    """Renders mask meshes; holds the OpenGL context and its buffers (one per worker process).

    Parameters
    ----------
    skin_albedo
        RGB albedo of the skin, the same for every patient.
    """

    def __init__(self, skin_albedo: tuple[int, int, int]) -> None:
        self._ctx = moderngl.create_standalone_context(**CONTEXT_SETTINGS)
        self._program = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._program["light"] = tuple(LIGHT)
        self._program["ambient"] = AMBIENT
        self._vertices = self._ctx.buffer(reserve=MESH_VERTEX_COUNT * 9 * 4)
        indices = self._ctx.buffer(TRIANGLES.astype("u4").tobytes())
        self._vao = self._ctx.vertex_array(
            self._program, [(self._vertices, "3f 3f 3f", "position", "normal", "colour")], indices
        )
        self._colours = vertex_colours(skin_albedo)
        self._capacity = (0, 0)
        self._multisampled: moderngl.Framebuffer | None = None

    def close(self) -> None:
        """Release the OpenGL context."""
        self._ctx.release()

    def _multisampled_framebuffer(self, width: int, height: int) -> moderngl.Framebuffer:
        if self._multisampled is None or width > self._capacity[0] or height > self._capacity[1]:
            step = FRAMEBUFFER_STEP
            size = (max(self._capacity[0], -(-width // step) * step), max(self._capacity[1], -(-height // step) * step))
            if self._multisampled is not None:
                self._multisampled.release()
            self._multisampled = self._ctx.framebuffer(
                self._ctx.renderbuffer(size, 4, samples=SAMPLES),
                self._ctx.depth_renderbuffer(size, samples=SAMPLES),
            )
            self._capacity = size
        return self._multisampled

    def render(self, vertices: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
        """The mesh over ``region`` = ``(x0, y0, x1, y1)`` of the image, as RGBA uint8.

        ``vertices`` are the mask's landmarks in image pixels (at least the 468 mesh vertices).
        Alpha is the mesh's coverage of each pixel (antialiased edges, zero in the eye and mouth
        openings and outside the face).
        """
        x0, y0, x1, y1 = region
        width, height = x1 - x0, y1 - y0
        scale = min(1.0, MAX_RENDER_SIDE / max(width, height))
        drawn_width, drawn_height = max(1, round(width * scale)), max(1, round(height * scale))
        mesh = vertices[:MESH_VERTEX_COUNT]
        data = np.hstack([mesh, vertex_normals(mesh), self._colours]).astype("f4")
        near, far = float(mesh[:, 2].min()) - 1.0, float(mesh[:, 2].max()) + 1.0
        # Make this renderer's context current: with several maskers in a process (one per
        # profile) the last one created is current, and drawing into it gave wrong masks.
        with self._ctx:
            self._vertices.write(data.tobytes())
            self._program["origin"] = (float(x0), float(y0))
            self._program["size"] = (float(width), float(height))
            self._program["depth"] = (near, far)
            multisampled = self._multisampled_framebuffer(drawn_width, drawn_height)
            multisampled.use()
            multisampled.viewport = (0, 0, drawn_width, drawn_height)
            multisampled.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._ctx.enable(moderngl.DEPTH_TEST)
            self._vao.render(moderngl.TRIANGLES)
            # Resolve into a target of exactly the drawn size: the copy covers the smaller of
            # the two framebuffers, and resolving the whole reused one cost more than the draw.
            target = self._ctx.renderbuffer((drawn_width, drawn_height), 4)
            resolved = self._ctx.framebuffer(target)
            self._ctx.copy_framebuffer(resolved, multisampled)
            pixels = resolved.read(components=4)
            resolved.release()
            target.release()
        rgba = np.frombuffer(pixels, dtype=np.uint8).reshape(drawn_height, drawn_width, 4)
        if scale < 1.0:
            return cv2.resize(rgba, (width, height), interpolation=cv2.INTER_LINEAR)
        return rgba
