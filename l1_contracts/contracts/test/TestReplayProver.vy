# pragma version ~=0.4.3
"""
@title TestReplayProver
@license MIT
@notice TEST DOUBLE of the one-step prover. It does not execute the STF: it
        returns the state root after a step from a table that a test
        pre-loads with the honest per-step roots (computed in Python by
        `state.db.StateDB.roots_after_each`). The real OneStepProver
        replaces it; it implements the same IOneStepProver interface.
@dev What it does check, as the real prover must: the step's bytes are step
     `step_index` of the batch, by a Merkle branch against
     `batch.steps_root`. Witness layout (abi-encoded):
     `(bytes step, bytes32[] branch)`.

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
@view
def prove(
    pre_root: bytes32,
    step_index: uint256,
    batch: IOneStepProver.BatchData,
    ctx: IOneStepProver.StepContext,
    witness: Bytes[131072],
) -> bytes32:
    """
    @notice The honest root after step `step_index` from `pre_root`.
    @param pre_root The agreed root before the step.
    @param step_index The step (0-based).
    @param batch The batch's data fields (trusted: checked by the rollup).
    @param ctx The deployment constants (unused by this double).
    @param witness abi_encode(step bytes, Merkle branch).
    @return The root after the step.
    """
    step: Bytes[65535] = b""
    branch: DynArray[bytes32, Merkle.MAX_DEPTH] = []
    step, branch = abi_decode(witness, (Bytes[65535], DynArray[bytes32, Merkle.MAX_DEPTH]))
    assert Merkle._verify(keccak256(step), step_index, batch.n_steps, branch, batch.steps_root), "BAD_STEP_PROOF"
    post: bytes32 = self.roots[self._key(batch.steps_root, step_index, pre_root)]
    assert post != empty(bytes32), "UNKNOWN_PRE_ROOT"
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
