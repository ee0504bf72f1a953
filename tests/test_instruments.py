from deeporb.instruments import (
    GM_PROGRAMS,
    PROGRAM_KEYS,
    RESERVED_KEYS,
    instrument_key,
    key_program,
    program_key,
    safe_key,
)


def test_program_keys_are_gm_names_in_snake_case():
    assert program_key(0) == "acoustic_grand_piano"
    assert program_key(48) == "string_ensemble_1"
    assert program_key(24) == "acoustic_guitar_nylon"
    assert program_key(5, is_drum=True) == "drums"
    assert len({program_key(p) for p in range(128)}) == len(GM_PROGRAMS)


def test_keys_from_untrusted_names_are_safe():
    assert safe_key("../../etc/passwd") == "etc_passwd"
    assert safe_key("Violin I (solo)") == "violin_i_solo"
    assert safe_key("..") == "" and safe_key("/") == ""
    assert len(safe_key("x" * 500)) == 40
    assert instrument_key("name", 40, False, "..") == "violin"  # nothing left: program key
    assert instrument_key("name", 0, True, "Kit") == "drums"


def test_key_program_round_trip():
    assert all(key_program(program_key(p)) == (p, False) for p in range(128))
    assert key_program("drums") == (0, True)
    assert key_program("soprano", default=52) == (52, False)


def test_reserved_keys_are_never_taken_by_a_track_name():
    assert instrument_key("name", 0, False, "cache") == "cache_track"  # the session's token cache
    assert instrument_key("name", 0, False, "Drums") == "drums_track"  # melodic: not the drum kit
    assert instrument_key("name", 0, True, "Drums") == "drums"
    assert key_program("drums_track", default=7) == (7, False)
    assert "cache" in RESERVED_KEYS and "drums" in RESERVED_KEYS
    assert not set(PROGRAM_KEYS) & RESERVED_KEYS
