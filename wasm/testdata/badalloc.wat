;; badalloc.wat: yomo_alloc without its parameter.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (memory (export "memory") 1)
  (func (export "yomo_alloc") (result i32) (i32.const 0))
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
