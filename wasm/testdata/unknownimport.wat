;; unknownimport.wat: imports a host function that does not exist.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_send_email" (func $mail (param i32)))
  (memory (export "memory") 1)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
