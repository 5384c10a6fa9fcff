;; badimport.wat: imports yomo_write with the wrong signature.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
