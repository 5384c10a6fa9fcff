;; minimal.wat: only what the ABI requires (no _initialize, yomo_init or
;; yomo_wanted_target). Observes tag 1 and writes its payload back, tag 2.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_context_data" (func $data (param i32 i32) (result i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")
    (drop (call $write (i32.const 2) (i32.const 0)
      (call $data (i32.const 0) (i32.const 65536))))))
