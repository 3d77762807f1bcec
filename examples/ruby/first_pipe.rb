# The lesson's "Our First Pipe", between two processes, one Ruby and one
# Rust (examples/ruby_lesson.rs): a plain pipe, bytes without frames. The
# child writes into it (its stdout) and exits; the parent closes its own
# copy of the write end, so that reading to the end of the stream ends.
#
#   ruby examples/ruby/first_pipe.rb parent target/debug/examples/ruby_lesson

case ARGV[0]
when "parent"
  reader, writer = IO.pipe
  pid = Process.spawn(*ARGV[1..], "first_pipe", "child", out: writer)
  writer.close # else reader.read waits for ever
  text = reader.read
  puts text
  _, status = Process.wait2(pid)
  exit(status.success? && text == "Into the pipe I go..." ? 0 : 1)
when "child"
  $stdout.write("Into the pipe I go...")
else
  abort "usage: first_pipe.rb parent RUST_BIN | child"
end
