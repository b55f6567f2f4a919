#! /usr/bin/env atf-sh
# A short libFuzzer run of the wire decoder; `make fuzz` runs it for longer.

atf_test_case wire_decoder
wire_decoder_head() {
  atf_set descr "libFuzzer on frames, messages and the handshake for 30 seconds finds nothing"
  atf_set timeout 180
}
wire_decoder_body() {
  fuzzer="$(atf_get_srcdir)/wire_fuzz"
  [ -x "$fuzzer" ] || atf_fail "fuzzer not built: $fuzzer (make check builds it with clang)"
  corpus="$(atf_get_srcdir)/corpus"
  mkdir work
  cp "$corpus"/* work/ 2>/dev/null || true
  atf_check -s exit:0 -o ignore -e save:fuzz.log "$fuzzer" -max_total_time="${ROAM_FUZZ_SECONDS:-30}" -print_final_stats=1 work
  grep -E 'stat::number_of_executed_units|Done' fuzz.log || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz.log)
  [ "${execs:-0}" -gt 1000 ] || atf_fail "the fuzzer ran only ${execs:-0} inputs"
}

atf_init_test_cases() {
  atf_add_test_case wire_decoder
}
