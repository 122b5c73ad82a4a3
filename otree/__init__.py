"""otree: Erlang/OTP supervision trees for OS processes (public surface being assembled)."""
