# The lesson's "Sharing pipes", one side Ruby and the other Rust
# (examples/ruby_lesson.rs): the child writes ten messages into a pipe,
# its stdout; the parent, having closed its own copy of the write end,
# reads them to the end of the stream. Frames in MessagePack.
#
#   ruby examples/ruby/sharing_pipe.rb parent target/debug/examples/ruby_lesson
#   (the Rust parent runs this file as `… child`)

require_relative "../../peers/ruby/procwire"

case ARGV[0]
when "parent"
  reader, writer = IO.pipe
  pid = Process.spawn(ARGV[1], "sharing_pipe", "child", out: writer)
  writer.close # else the end of the stream never comes
  ch = Procwire::Channel.new(reader, codec: "msgpack")
  lines = ch.map { |line| line }
  lines.each { |l| puts l }
  _, status = Process.wait2(pid)
  exit(status.success? && lines == ["Another one bites the dust"] * 10 ? 0 : 1)
when "child"
  ch = Procwire::Channel.new($stdout, codec: "msgpack")
  10.times { ch.send_msg("Another one bites the dust") }
else
  abort "usage: sharing_pipe.rb parent RUST_BIN | child"
end
