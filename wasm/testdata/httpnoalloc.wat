;; httpnoalloc.wat: imports yomo_http_send without exporting yomo_alloc.
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_http_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "yomo_observe_datatags") (call $observe (i32.const 1)))
  (func (export "yomo_handler")))
