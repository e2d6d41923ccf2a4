# pragma version ~=0.4.3
"""
@title HFX devnet collateral token
@license MIT
@notice A plain ERC-20 with 6 decimals (a USD stablecoin stand-in) for
        devnets and tests. On a public chain the bridge holds a real
        stablecoin instead; this contract is never deployed there.
@dev The minter (fixed at deployment) may mint any amount to anyone: that is
     how a devnet funds its traders. An allowance of max_value(uint256) is
     never decreased by `transferFrom`.
"""

from ethereum.ercs import IERC20

implements: IERC20


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


name: public(String[32])
symbol: public(String[16])
decimals: public(constant(uint8)) = 6
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
minter: public(immutable(address))


@deploy
def __init__(name_: String[32], symbol_: String[16], minter_: address):
    """
    @param name_ The token name.
    @param symbol_ The token symbol.
    @param minter_ The only address allowed to mint.
    """
    assert minter_ != empty(address), "ZERO_ADDRESS"
    self.name = name_
    self.symbol = symbol_
    minter = minter_


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` units from the caller to `receiver`.
    @param receiver The recipient.
    @param amount The amount, in units of 10**-6 token.
    @return True.
    """
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` units from `sender` to `receiver` using the caller's allowance.
    @param sender The owner of the funds.
    @param receiver The recipient.
    @param amount The amount.
    @return True.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "ALLOWANCE"
        # cannot underflow: checked just above
        self.allowance[sender][msg.sender] = unsafe_sub(allowed, amount)
        log Approval(owner=sender, spender=msg.sender, value=unsafe_sub(allowed, amount))
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` units of the caller's tokens.
    @param spender The spender.
    @param amount The allowance (max_value(uint256) never decreases).
    @return True.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(receiver: address, amount: uint256):
    """
    @notice Create `amount` units for `receiver` (minter only).
    @param receiver The recipient.
    @param amount The amount.
    """
    assert msg.sender == minter, "NOT_MINTER"
    assert receiver != empty(address), "ZERO_ADDRESS"
    self.totalSupply += amount
    # cannot overflow: a balance never exceeds totalSupply, checked above
    self.balanceOf[receiver] = unsafe_add(self.balanceOf[receiver], amount)
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    """
    @notice Move `amount` units between two balances.
    @param sender The payer.
    @param receiver The payee (not the zero address).
    @param amount The amount.
    """
    assert receiver != empty(address), "ZERO_ADDRESS"
    balance: uint256 = self.balanceOf[sender]
    assert balance >= amount, "BALANCE"
    # cannot underflow: checked just above
    self.balanceOf[sender] = unsafe_sub(balance, amount)
    # cannot overflow: the sum of balances is totalSupply
    self.balanceOf[receiver] = unsafe_add(self.balanceOf[receiver], amount)
    log Transfer(sender=sender, receiver=receiver, value=amount)
