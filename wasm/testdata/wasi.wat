;; wasi.wat: a guest that reports what WASI lets it see, to test the
;; sandbox. yomo_handler acts on the frame's tag:
;;   1: environ_sizes_get        -> tag 201: count, size (2 x u32)
;;   2: clock_time_get(realtime) -> tag 202: nanoseconds (u64)
;;   3: fd_write "hello\n" to stdout and stderr, no frame
;;   4: fd_prestat_get(3)        -> tag 204: errno (u32; 0 = a directory is mounted)
;;   5: random_get(16)           -> tag 205: the 16 bytes
(module
  (import "env" "yomo_observe_datatag" (func $observe (param i32)))
  (import "env" "yomo_context_tag" (func $tag (result i32)))
  (import "env" "yomo_write" (func $write (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "hello\n")

  (func (export "yomo_observe_datatags")
    (call $observe (i32.const 1)) (call $observe (i32.const 2)) (call $observe (i32.const 3))
    (call $observe (i32.const 4)) (call $observe (i32.const 5)))

  (func (export "yomo_handler")
    (block $done (block $t5 (block $t4 (block $t3 (block $t2 (block $t1 (block $t0
      (br_table $t0 $t1 $t2 $t3 $t4 $t5 $done (call $tag)))
      (br $done)
    ) ;; 1
      (drop (call $environ_sizes (i32.const 0) (i32.const 4)))
      (drop (call $write (i32.const 201) (i32.const 0) (i32.const 8)))
      (br $done)
    ) ;; 2
      (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 16)))
      (drop (call $write (i32.const 202) (i32.const 16) (i32.const 8)))
      (br $done)
    ) ;; 3: iovec {128, 6} at 64, bytes written at 96
      (i32.store (i32.const 64) (i32.const 128))
      (i32.store (i32.const 68) (i32.const 6))
      (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 96)))
      (drop (call $fd_write (i32.const 2) (i32.const 64) (i32.const 1) (i32.const 96)))
      (br $done)
    ) ;; 4
      (i32.store (i32.const 200) (call $prestat (i32.const 3) (i32.const 208)))
      (drop (call $write (i32.const 204) (i32.const 200) (i32.const 4)))
      (br $done)
    ) ;; 5
      (drop (call $random (i32.const 300) (i32.const 16)))
      (drop (call $write (i32.const 205) (i32.const 300) (i32.const 16)))
    ))
)
