# pragma version ~=0.4.3
"""
@title TestForwarder
@license MIT
@notice TEST DOUBLE: forwards a call, so that a test can call the rollup
        from a contract (msg.sender != tx.origin).
"""


@external
@payable
def forward(target: address, data: Bytes[130000]) -> Bytes[32]:
    """
    @notice Call `target` with `data` and the ether sent; bubble up a revert.
    @param target The callee.
    @param data The calldata.
    @return The first 32 bytes of the return data.
    """
    return raw_call(target, data, max_outsize=32, value=msg.value)
