;; startexit0.wat: a WASI command whose _start sets its state and then
;; exits with code 0, as C's exit(0) would; the state must survive.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 0x6b6f)) ;; "ok"
    (call $exit (i32.const 0))
    unreachable)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  ;; Writes the state _start left with tag 2, then exits with code 0: in a
  ;; handler that is an exit like any other.
  (func (export "yomo_handler")
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 2)))
    (call $exit (i32.const 0))))
