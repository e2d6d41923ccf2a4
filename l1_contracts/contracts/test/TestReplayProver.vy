# pragma version ~=0.4.3
"""
@title TestReplayProver
@license MIT
@notice TEST DOUBLE of the one-step prover, for tests of the dispute game's
        rules (thousands of games, where executing real steps would only
        slow them down). It does not execute the STF: it records the state
        root after a step from a table that a test pre-loads with the honest
        per-step roots (computed in Python by
        `state.db.StateDB.roots_after_each`). It implements the same
        IOneStepProver interface as the real OneStepProver, which
        deployments use.
@dev What it does check, as the real prover must: the step's bytes are step
     `step_index` of the batch, by a Merkle branch against
     `batch.steps_root`.

     Table key: keccak256(steps_root ‖ step_index ‖ pre_root). A pre-root
     the table does not know (one no honest execution reaches) reverts,
     like a real prover that is handed a witness for a root it cannot prove.
"""

from .. import IOneStepProver
from .. import Merkle

implements: IOneStepProver

MAX_LOAD: constant(uint256) = 1024

# keccak256(steps_root ‖ step_index ‖ pre_root) => root after the step
roots: public(HashMap[bytes32, bytes32])
# claim => root after the step (IOneStepProver)
result: public(HashMap[bytes32, bytes32])


@external
def load(steps_root: bytes32, first_index: uint256, roots: DynArray[bytes32, MAX_LOAD + 1]):
    """
    @notice Load honest roots: roots[j] is the root after `first_index + j`
            steps, so step `first_index + j` maps roots[j] to roots[j + 1].
    @param steps_root The batch's steps root.
    @param first_index The step index of the first transition.
    @param roots Consecutive honest roots (at least two).
    """
    for j: uint256 in range(MAX_LOAD):
        if j + 1 >= len(roots):
            break
        self.roots[self._key(steps_root, first_index + j, roots[j])] = roots[j + 1]


@external
def prove(
    pre_root: bytes32,
    step_index: uint256,
    batch: IOneStepProver.BatchData,
    ctx: IOneStepProver.StepContext,
    step: Bytes[65535],
    branch: DynArray[bytes32, Merkle.MAX_DEPTH],
) -> bytes32:
    """
    @notice Record the honest root after step `step_index` from `pre_root`
            under the step's claim, as the real prover records the root it
            computes.
    @param pre_root The agreed root before the step.
    @param step_index The step (0-based).
    @param batch The batch's data fields.
    @param ctx The deployment's context.
    @param step The step's bytes.
    @param branch Its Merkle branch into `batch.steps_root`.
    @return The root after the step.
    """
    assert Merkle._verify(keccak256(step), step_index, batch.n_steps, branch, batch.steps_root), "BAD_STEP_PROOF"
    post: bytes32 = self.roots[self._key(batch.steps_root, step_index, pre_root)]
    assert post != empty(bytes32), "UNKNOWN_PRE_ROOT"
    claim: bytes32 = keccak256(
        abi_encode(pre_root, step_index, keccak256(abi_encode(batch)), keccak256(abi_encode(ctx)))
    )
    self.result[claim] = post
    return post


@internal
@pure
def _key(steps_root: bytes32, step_index: uint256, pre_root: bytes32) -> bytes32:
    """
    @notice The table key of one transition.
    @param steps_root The batch's steps root.
    @param step_index The step.
    @param pre_root The root before it.
    @return keccak256(steps_root ‖ step_index ‖ pre_root).
    """
    return keccak256(concat(steps_root, convert(step_index, bytes32), pre_root))
