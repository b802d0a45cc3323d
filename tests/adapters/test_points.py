"""Point adapter: files, normalisation, sampling, the meaning of the depth views, augmentations, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from adapter_media import write_ply

from unilk.adapters import PointsAdapter, PointsConfig
from unilk.adapters.io import load_points
from unilk.adapters.points import farthest_point_sample, normalize_points, project_depth
from unilk.adapters.points_augment import jitter, point_dropout, rotate_up, scale_shift
from unilk.errors import InputError

S = 32


def plane_z(side: int = 40, z: float = 0.0) -> np.ndarray:
    """A square grid of points in the plane z = const, x and y in [-1, 1]."""
    u = np.linspace(-1.0, 1.0, side)
    x, y = np.meshgrid(u, u)
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], axis=1).astype(np.float32)


def test_plane_gives_flat_depth_and_edge_on_views(tmp_path: Path) -> None:
    path = write_ply(tmp_path / "plane.ply", plane_z())
    views = PointsAdapter(PointsConfig(num_points=0, image_size=S))(path)
    assert views.shape == (3, S, S)
    assert views.dtype == torch.float32
    along_z = views[2]
    filled = along_z > 0
    # after centring and unit-sphere scaling the square spans ±1/√2: the centre of the z view is filled...
    inner = int(S * (1 - 1 / np.sqrt(2)) / 2) + 1
    assert filled[inner:-inner, inner:-inner].all()
    # ...at one flat depth, (1 + z) / 2 = 0.5 for the plane z = 0, and the corners outside the square are empty
    assert torch.allclose(along_z[filled], torch.tensor(0.5))
    assert not filled[: inner - 1, :].any()
    assert not filled[:, : inner - 1].any()
    # seen edge-on along x or y the plane is one line, at the row / column of z = 0; everything else is empty
    along_x, along_y = views[0], views[1]
    rows_hit = torch.nonzero(along_x.sum(dim=1)).flatten().tolist()
    assert rows_hit == [S - 1 - S // 2]  # x view: z runs up the rows, z = 0 -> cell S/2 from the bottom
    cols_hit = torch.nonzero(along_y.sum(dim=0)).flatten().tolist()
    assert cols_hit == [S // 2]  # y view: z runs along the columns


def test_depth_keeps_the_surface_nearest_the_viewer() -> None:
    # two parallel planes: the z view sees the upper one (z = +0.5), values are (1 + z) / 2
    pts = np.concatenate([plane_z(20, 0.5), plane_z(20, -0.5)])
    views = PointsAdapter(PointsConfig(num_points=0, image_size=S))(pts)
    centred = normalize_points(torch.from_numpy(pts))
    top = (1 + centred[:, 2].max()) / 2
    assert torch.allclose(views[2][views[2] > 0], top)


def test_projection_is_batched_deterministic_and_orders_axes() -> None:
    gen = torch.Generator().manual_seed(0)
    clouds = normalize_points(torch.rand(4, 500, 3, generator=gen) * 2 - 1)
    batch = project_depth(clouds, S)
    assert batch.shape == (4, 3, S, S)
    for i in range(4):
        assert torch.equal(batch[i], project_depth(clouds[i : i + 1], S)[0])
    assert torch.equal(batch, project_depth(clouds, S))
    # one point at (x, y, z) = (0.9, -0.9, 0.0): z view column from x (right), row from y (bottom)
    point = torch.tensor([[[0.9, -0.9, 0.0]]])
    view_z = project_depth(point, S)[0, 2]
    row, col = torch.nonzero(view_z)[0].tolist()
    assert col > S * 0.9
    assert row > S * 0.9


def test_fps_spreads_points_and_fixed_count() -> None:
    # a dense blob and a far point: FPS from point 0 must pick the far point second
    cloud = torch.cat([torch.zeros(100, 3) + torch.rand(100, 3) * 0.01, torch.tensor([[5.0, 5.0, 5.0]])])
    idx = farthest_point_sample(cloud.unsqueeze(0), 2)[0]
    assert idx.tolist() == [0, 100]
    cloud = torch.rand(1000, 3)
    for sampling in ("fps", "random"):
        adapter = PointsAdapter(PointsConfig(num_points=64, sampling=sampling, image_size=S))
        out = adapter.points(cloud)
        assert out.shape == (64, 3)
        assert out.norm(dim=1).max() <= 1.0 + 1e-6
        assert torch.equal(adapter(cloud), adapter(cloud))  # deterministic without a generator
    seeded = adapter.points(cloud, torch.Generator().manual_seed(5))
    assert not torch.equal(seeded, adapter.points(cloud))
    few = PointsAdapter(PointsConfig(num_points=64, sampling="random", image_size=S)).points(torch.rand(10, 3))
    assert few.shape == (64, 3)


def test_file_formats(tmp_path: Path) -> None:
    pts = np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32)
    adapter = PointsAdapter(PointsConfig(num_points=0, image_size=S))
    reference = adapter(pts)
    np.save(tmp_path / "c.npy", pts)
    np.savez(tmp_path / "c.npz", points=pts)
    np.savetxt(tmp_path / "c.txt", np.concatenate([pts, np.ones((300, 3))], axis=1), delimiter=",")
    write_ply(tmp_path / "a.ply", pts, binary=False)
    write_ply(tmp_path / "b.ply", pts)
    for name in ["c.npy", "c.npz", "c.txt", "a.ply", "b.ply"]:
        torch.testing.assert_close(adapter(tmp_path / name), reference, atol=1e-5, rtol=0, msg=name)


def test_open3d_reads_and_writes_ply(tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d", reason="open3d cannot be imported (libusb-1.0 missing?)", exc_type=ImportError)
    pts = np.random.default_rng(1).standard_normal((200, 3))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    o3d.io.write_point_cloud(str(tmp_path / "o.ply"), cloud)
    o3d.io.write_point_cloud(str(tmp_path / "o.pcd"), cloud)
    adapter = PointsAdapter(PointsConfig(num_points=0, image_size=S))
    expected = adapter(pts.astype(np.float32))
    for name in ("o.ply", "o.pcd"):
        torch.testing.assert_close(adapter(tmp_path / name), expected, atol=1e-5, rtol=0, msg=name)
    # meshes: points sampled from a unit cube's triangles lie on its faces
    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
    box.compute_triangle_normals()  # STL stores face normals
    for name in ("box.obj", "box.stl"):
        assert o3d.io.write_triangle_mesh(str(tmp_path / name), box)
        sampled = load_points(tmp_path / name, mesh_points=300)
        assert sampled.shape == (300, 3), name
        to_face = np.minimum(np.abs(sampled), np.abs(sampled - 1)).min(axis=1)
        assert to_face.max() < 1e-5, name


def test_augmentations_are_seeded_and_keep_shape() -> None:
    clouds = normalize_points(torch.rand(3, 200, 3) * 2 - 1)
    for fn in (scale_shift, jitter, rotate_up, point_dropout):
        a = fn(clouds, torch.Generator().manual_seed(3))
        b = fn(clouds, torch.Generator().manual_seed(3))
        assert a.shape == clouds.shape
        assert torch.equal(a, b), fn.__name__
    rotated = rotate_up(clouds, torch.Generator().manual_seed(0), up_axis=1)
    torch.testing.assert_close(rotated[..., 1], clouds[..., 1])  # the up coordinate is unchanged
    torch.testing.assert_close(rotated.norm(dim=-1), clouds.norm(dim=-1))  # a rotation keeps lengths
    assert (jitter(clouds, torch.Generator().manual_seed(0)) - clouds).abs().max() <= 0.05
    dropped = point_dropout(clouds, torch.Generator().manual_seed(0), max_ratio=0.875)
    replaced = (dropped == clouds[:, :1]).all(dim=-1)
    assert replaced.sum() > 3  # some points became copies of point 0


# ----------------------------------------------------------------------------------------------- bad inputs


def test_bad_point_inputs(tmp_path: Path) -> None:
    adapter = PointsAdapter(PointsConfig(num_points=16, image_size=S))
    with pytest.raises(InputError, match="no points"):
        adapter(np.zeros((0, 3), np.float32))
    nan = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    nan[4, 1] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        adapter(nan)
    inf = np.ones((50, 3), np.float32)
    inf[0, 0] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        adapter(inf)
    with pytest.raises(InputError, match=r"expected \[N, 3\]"):
        adapter(np.zeros((10, 2), np.float32))
    (tmp_path / "empty.ply").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        adapter(tmp_path / "empty.ply")
    good = write_ply(tmp_path / "good.ply", np.ones((100, 3), np.float32)).read_bytes()
    (tmp_path / "trunc.ply").write_bytes(good[: len(good) - 200])
    with pytest.raises(InputError, match=r"trunc.ply"):
        adapter(tmp_path / "trunc.ply")
    (tmp_path / "cloud.png").write_bytes(good)
    with pytest.raises(InputError, match="extension"):
        adapter(tmp_path / "cloud.png")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match=r"junk.npy"):
        adapter(tmp_path / "junk.npy")
    header_only = write_ply(tmp_path / "none.ply", np.zeros((0, 3), np.float32))
    with pytest.raises(InputError, match="no points"):
        adapter(header_only)


def test_off_mesh_is_sampled_on_its_surface(tmp_path: Path) -> None:
    # a unit square in the plane z = 0 as one quad, with ModelNet's header quirk ("OFF4 1 0" on one line)
    (tmp_path / "quad.off").write_text("OFF4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    points = load_points(tmp_path / "quad.off", mesh_points=500)
    assert points.shape == (500, 3)
    assert np.all(points[:, 2] == 0)
    assert points[:, :2].min() >= 0
    assert points[:, :2].max() <= 1
    # both triangles of the fan are covered, in proportion to their (equal) areas
    above = (points[:, 1] > points[:, 0]).mean()
    assert 0.4 < above < 0.6
    np.testing.assert_array_equal(points, load_points(tmp_path / "quad.off", mesh_points=500))  # seeded
    (tmp_path / "cut.off").write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n")
    with pytest.raises(InputError, match="truncated"):
        load_points(tmp_path / "cut.off")


def test_scale_shift_factors_and_offsets_stay_in_their_ranges() -> None:
    # point 0 at the origin shows the offset; point 1 at (1, 1, 1) shows the per-axis factors
    clouds = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).expand(64, 2, 3).contiguous()
    for anisotropic in (False, True):
        out = scale_shift(
            clouds, torch.Generator().manual_seed(0), scale=(0.5, 2.0), shift=0.2, anisotropic=anisotropic
        )
        offsets, factors = out[:, 0], out[:, 1] - out[:, 0]
        assert offsets.abs().max() <= 0.2
        assert offsets.abs().max() > 0.15  # the whole range is drawn from, per axis
        assert factors.min() >= 0.5
        assert factors.max() <= 2.0
        spread = (factors.max(dim=1).values - factors.min(dim=1).values).max()
        if anisotropic:
            assert spread > 0.5  # one factor per axis
        else:
            assert spread < 1e-6  # one factor per cloud
