"""hybridwam.envs: gymnasium API conformance, batched == one-world stepping, seeding, autoreset,
rewards that sum to the task cost, torch output, and swapping the physics for a HybridModel."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import hybridwam as hw

gym = pytest.importorskip("gymnasium")
envs = pytest.importorskip("hybridwam.envs")
from gymnasium.utils import seeding  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from gymnasium.vector import AutoresetMode, VectorEnv  # noqa: E402

TASK = "cartpole_swingup"


@pytest.fixture(scope="module")
def cartpole():
    """(task, physics) shared by the tests (one kernel compile)."""
    task = hw.Task.from_yaml(TASK)
    return task, hw.Physics(task.load_model(device="cpu"))


def _actions(rng, env, steps):
    lo, hi = env.single_action_space.low, env.single_action_space.high
    return rng.uniform(1.3 * lo, 1.3 * hi, size=(steps, env.num_envs, env.task.nu)).astype(np.float32)  # some clip


def test_public_api():
    """The package exposes the env API at the top level (``hw.make_vec_env`` ...)."""
    for name in ("make_vec_env", "HybridWamEnv", "HybridWamVecEnv"):
        assert getattr(hw, name) is getattr(envs, name)


def test_single_env_passes_gymnasium_check_env(cartpole):
    task, physics = cartpole
    env = envs.HybridWamEnv(task, world=physics)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    # the only remarks allowed: unbounded observations and an action Box in physical units
    allowed = ("infinity", "symmetric and normalized")
    bad = [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)]
    assert not bad, bad
    obs, info = env.reset(seed=0)
    assert obs.shape == (task.nq + task.nv,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert isinstance(r, float) and term is False and trunc is False and isinstance(info["success"], bool)


def test_spaces_and_shapes(cartpole):
    task, physics = cartpole
    env = envs.make_vec_env(task, 5, world=physics)
    assert isinstance(env, VectorEnv) and env.num_envs == 5
    n = task.nq + task.nv
    assert env.single_observation_space.shape == (n,) and env.observation_space.shape == (5, n)
    assert env.single_action_space.shape == (task.nu,) and env.action_space.shape == (5, task.nu)
    np.testing.assert_array_equal(env.single_action_space.low, [-30.0])  # the scene's ctrlrange
    np.testing.assert_array_equal(env.single_action_space.high, [30.0])
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = env.reset(seed=1)
    assert obs.shape == (5, n) and obs.dtype == np.float32 and info == {}
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert obs.shape == (5, n) and r.shape == (5,) and r.dtype == np.float64
    assert term.dtype == np.bool_ and trunc.dtype == np.bool_ and term.shape == trunc.shape == (5,)
    assert info["success"].shape == (5,) and info["_success"].all()
    assert env.observation_space.contains(obs)
    # observation = concat(qpos, qvel), hinge angles not wrapped
    np.testing.assert_array_equal(obs, torch.cat([env.qpos, env.qvel], -1).numpy())
    with pytest.raises(ValueError, match="actions"):
        env.step(np.zeros((4, task.nu)))
    env.close()


def test_batched_equals_one_world_at_a_time(cartpole):
    """World i of a B-world env (reset(seed=k)) == a one-world env reset with seed k + i, under the
    same actions, through two autoresets (NEXT_STEP: the step after the end returns the first obs)."""
    task, physics = cartpole
    B, T, H, seed = 4, 23, 9, 11
    vec = envs.make_vec_env(task, B, world=physics, max_episode_steps=H)
    acts = _actions(np.random.default_rng(0), vec, T)
    obs, _ = vec.reset(seed=seed)
    ones = [envs.HybridWamEnv(task, world=physics, max_episode_steps=H) for _ in range(B)]
    single_obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(ones)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    ended = np.zeros(B, dtype=bool)
    for t in range(T):
        obs, r, term, trunc, info = vec.step(acts[t])
        for i, e in enumerate(ones):
            if ended[i]:  # next-step autoreset: reset the single world, no step
                o, _ = e.reset()
                ri, te, tr = 0.0, False, False
            else:
                o, ri, te, tr, _ = e.step(acts[t, i])
            np.testing.assert_array_equal(obs[i], o, err_msg=f"world {i}, step {t}")  # same kernel, per world
            np.testing.assert_allclose(r[i], ri, rtol=1e-6, atol=1e-9)
            assert (term[i], trunc[i]) == (te, tr)
        ended = term | trunc
    assert vec.elapsed_steps.max() < H


def test_reset_seed_reproducible(cartpole):
    task, physics = cartpole
    env = envs.make_vec_env(task, 3, world=physics)
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    np.testing.assert_array_equal(a, b)
    c, _ = env.reset()  # unseeded: the worlds' generators continue
    assert not np.array_equal(a, c)
    d, _ = env.reset(seed=[5, 6, 7])  # list of seeds == int seed k -> k, k+1, k+2
    np.testing.assert_array_equal(a, d)
    e, _ = env.reset(seed=6)
    np.testing.assert_array_equal(a[1:], e[:2])
    # the noise: U(-0.01, 0.01) on every hinge / slide coordinate and velocity
    rng = seeding.np_random(5)[0]
    x0 = np.concatenate([task.qpos0.numpy(), task.qvel0.numpy()])
    np.testing.assert_allclose(a[0], x0 + rng.uniform(-0.01, 0.01, x0.size), atol=1e-7)
    # same seed and actions -> same trajectory
    acts = _actions(np.random.default_rng(1), env, 5)
    runs = []
    for _ in range(2):
        env.reset(seed=9)
        runs.append([env.step(u)[0] for u in acts])
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))
    # no noise: exactly the task's initial state
    z = envs.make_vec_env(task, 2, world=physics, reset_noise_scale=0.0)
    np.testing.assert_array_equal(z.reset(seed=0)[0], np.tile(x0.astype(np.float32), (2, 1)))


def test_torch_output(cartpole):
    task, physics = cartpole
    env = envs.make_vec_env(task, 3, world=physics, torch_output=True)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.shape == (3, 4) and obs.dtype == torch.float32
    obs2, r, term, trunc, info = env.step(torch.zeros(3, 1))
    for x in (obs2, r, term, trunc, info["success"]):
        assert isinstance(x, torch.Tensor) and x.device == torch.device(physics.model.device)
    assert term.dtype == torch.bool and trunc.dtype == torch.bool and r.shape == (3,)
    # same numbers as the numpy env
    ref = envs.make_vec_env(task, 3, world=physics)
    ref.reset(seed=0)
    o, rr, *_ = ref.step(np.zeros((3, 1), np.float32))
    np.testing.assert_array_equal(obs2.numpy(), o)
    np.testing.assert_allclose(r.numpy(), rr, rtol=1e-6)
    single = envs.HybridWamEnv(task, world=physics, torch_output=True)
    o1, _ = single.reset(seed=0)
    o1, r1, te1, tr1, _ = single.step(torch.zeros(1))
    assert isinstance(o1, torch.Tensor) and o1.shape == (4,) and r1.shape == ()
    assert single.metadata["torch"]


def test_autoreset_next_step_at_truncation(cartpole):
    task, physics = cartpole
    H, seed = 3, 2
    env = envs.make_vec_env(task, 2, world=physics, max_episode_steps=H)
    first, _ = env.reset(seed=seed)
    u = np.full((2, 1), 5.0, np.float32)
    for t in range(1, H + 1):
        obs, r, term, trunc, info = env.step(u)
        assert trunc.all() == (t == H) and not term.any() and (r < 0).all()
    # the step after: every world reset (action ignored), reward 0, flags down
    obs, r, term, trunc, info = env.step(u)
    assert not trunc.any() and not term.any() and (r == 0).all() and not info["_success"].any()
    rngs = [seeding.np_random(seed + i)[0] for i in range(2)]
    x0 = np.concatenate([task.qpos0.numpy(), task.qvel0.numpy()])
    for i, g in enumerate(rngs):
        np.testing.assert_allclose(first[i], x0 + g.uniform(-0.01, 0.01, 4), atol=1e-7)
        np.testing.assert_allclose(obs[i], x0 + g.uniform(-0.01, 0.01, 4), atol=1e-7)  # second draw
    assert (env.elapsed_steps == 0).all()
    obs2, r, _, trunc, _ = env.step(u)  # and a new episode runs
    assert (r < 0).all() and not trunc.any() and (env.elapsed_steps == 1).all()


def test_autoreset_same_step_and_disabled(cartpole):
    task, physics = cartpole
    same = envs.make_vec_env(task, 2, world=physics, max_episode_steps=2, autoreset_mode="same_step")
    nxt = envs.make_vec_env(task, 2, world=physics, max_episode_steps=2)
    assert same.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    same.reset(seed=0)
    nxt.reset(seed=0)
    u = np.ones((2, 1), np.float32)
    o1, *_ = same.step(u)
    o2, r, term, trunc, info = same.step(u)
    n1, *_ = nxt.step(u)
    n2, *_ = nxt.step(u)
    n3, *_ = nxt.step(u)
    assert trunc.all() and info["_final_obs"].all()
    np.testing.assert_array_equal(info["final_obs"], n2)  # the last observation of the episode
    np.testing.assert_array_equal(o2, n3)  # already the next episode's first observation
    assert info["final_info"]["success"].shape == (2,)
    # disabled: nothing resets by itself; reset_mask resets chosen worlds only
    dis = envs.make_vec_env(task, 2, world=physics, max_episode_steps=1, autoreset_mode="disabled")
    dis.reset(seed=0)
    a, *_ = dis.step(u)
    b, r, _, trunc, _ = dis.step(u)
    assert trunc.all() and (r < 0).all() and not np.array_equal(a, b)
    c, _ = dis.reset(options={"reset_mask": np.array([True, False])})
    np.testing.assert_array_equal(c[1], b[1])
    assert not np.array_equal(c[0], b[0]) and list(dis.elapsed_steps) == [0, 2]


def test_episode_rewards_sum_to_task_cost():
    """With frame_skip = the task's action repeat (acrobot: 2) and no reset noise, the rewards of a
    full episode sum to -Task.cost of the same trajectory simulated directly."""
    task = hw.Task.from_yaml("acrobot_swingup")
    physics = hw.Physics(task.load_model(device="cpu"))
    env = envs.make_vec_env(task, 3, world=physics, reset_noise_scale=0.0)
    assert env.frame_skip == task.repeat == 2 and env.max_episode_steps == task.horizon
    acts = _actions(np.random.default_rng(3), env, task.horizon)
    env.reset(seed=0)
    total = np.zeros(3)
    for t in range(task.horizon):
        _, r, _, trunc, _ = env.step(acts[t])
        total += r
    assert trunc.all()
    actions = task.clip(torch.as_tensor(acts, dtype=torch.float64).transpose(0, 1))  # [B, H, nu]
    q0, v0 = task.initial_state(3)
    with torch.no_grad():
        traj = physics.rollout(q0, v0, task.expand(actions).float())
        ref = task.cost(traj.qpos.double(), traj.qvel.double(), actions).numpy()
    np.testing.assert_allclose(-total, ref, rtol=1e-5)


def test_frame_skip(cartpole):
    """frame_skip k: one env step = k physics steps with the action held; the episode keeps the
    task's duration (300 steps of 0.01 s -> 150 of 0.02 s) and the terminal window its length."""
    task, physics = cartpole
    env = envs.make_vec_env(task, 2, world=physics, frame_skip=2, reset_noise_scale=0.0)
    assert env.frame_skip == 2 and env.dt == pytest.approx(2 * task.timestep)
    assert env.max_episode_steps == task.horizon // 2 and env.terminal_steps == task.terminal_steps // 2
    obs, _ = env.reset(seed=0)
    u = np.array([[7.0], [-3.0]], np.float32)
    obs, r, *_ = env.step(u)
    q0, v0 = task.initial_state(2)
    with torch.no_grad():
        tr = physics.rollout(q0, v0, torch.as_tensor(u)[:, None].expand(2, 2, 1))
    np.testing.assert_array_equal(obs, torch.cat([tr.qpos[:, -1], tr.qvel[:, -1]], -1).numpy())
    ref = envs.step_cost(task, q0, v0, tr.qpos[:, -1], tr.qvel[:, -1], torch.as_tensor(u), 0.0, dt=env.dt)
    np.testing.assert_allclose(r, -ref.numpy(), rtol=1e-6)


def test_terminate_on_success():
    """A cartpole started exactly upright is within the success tolerance after one step."""
    base = hw.Task.from_yaml(TASK)
    cfg = dict(base.config)
    cfg["initial_state"] = {"qpos": [0.0, float(np.pi)], "qvel": [0.0, 0.0]}
    task = hw.Task.from_dict(cfg, source="upright")
    physics = hw.Physics(task.load_model(device="cpu"))
    env = envs.make_vec_env(task, 2, world=physics, reset_noise_scale=0.0, terminate_on_success=True)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step(np.zeros((2, 1)))
    assert term.all() and info["success"].all() and not trunc.any()
    never = envs.make_vec_env(task, 2, world=physics, reset_noise_scale=0.0)
    never.reset(seed=0)
    _, _, term, _, info = never.step(np.zeros((2, 1)))
    assert not term.any() and info["success"].all()


def test_hybrid_world_swaps_in(cartpole, tmp_path):
    """A zero-residual HybridModel gives the physics env's observations exactly (the physics of
    the looped engine, which runs its residual inside the step; the default, unrolled engine's
    to float32 rounding); a trained (here: perturbed) residual changes them, and survives save /
    load."""
    task, physics = cartpole
    model = physics.model
    acts = _actions(np.random.default_rng(4), envs.make_vec_env(task, 3, world=physics), 6)

    def run(world):
        env = envs.make_vec_env(task, 3, world=world)
        out = [env.reset(seed=2)[0]]
        for u in acts:
            out.append(env.step(u)[0])
        return np.stack(out)

    ref = run(physics)
    torch.manual_seed(0)
    zero = hw.HybridModel(physics, hw.Residual(model, hidden=(16,)))
    np.testing.assert_array_equal(run(zero), run(hw.Physics(model, verbose=False, engine="looped")))
    np.testing.assert_allclose(run(zero), ref, rtol=0, atol=1e-5)
    with torch.no_grad():
        zero.residual.net[-1].bias.fill_(0.5)
    changed = run(zero)
    assert np.abs(changed - ref).max() > 1e-4
    zero.save(str(tmp_path / "ckpt"))
    loaded = hw.HybridModel.load(str(tmp_path / "ckpt"), model=model)
    np.testing.assert_array_equal(run(loaded), changed)


def test_registered_ids(cartpole):
    for name in hw.list_tasks():
        eid = envs.ENV_IDS[name]
        assert eid == envs.env_id(name) and eid in gym.registry
    assert envs.ENV_IDS["cartpole_swingup"] == "hybridwam/CartpoleSwingup-v0"
    _, physics = cartpole
    env = gym.make("hybridwam/CartpoleSwingup-v0", world=physics)
    assert isinstance(env.unwrapped, envs.HybridWamEnv)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    vec = gym.make_vec("hybridwam/CartpoleSwingup-v0", num_envs=4, world=physics, max_episode_steps=7)
    assert isinstance(vec.unwrapped, envs.HybridWamVecEnv) and vec.num_envs == 4 and vec.max_episode_steps == 7
    assert vec.reset(seed=0)[0].shape == (4, 4)


def test_argument_errors(cartpole):
    task, physics = cartpole
    pend = hw.Physics(hw.load_model("pendulum", device="cpu"))
    with pytest.raises(ValueError, match="nq/nv/nu"):
        envs.make_vec_env(task, 2, world=pend)
    with pytest.raises(ValueError, match="num_envs"):
        envs.make_vec_env(task, 0, world=physics)
    with pytest.raises(ValueError, match="autoreset_mode"):
        envs.make_vec_env(task, 1, world=physics, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="device"):
        envs.make_vec_env(task, 1, world=physics, device="cuda:0")
    assert envs.make_vec_env(task, 1, world=physics, device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="render"):
        envs.make_vec_env(task, 1, world=physics, render_mode="human")
    env = envs.make_vec_env(task, 2, world=physics)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((2, 1)))
