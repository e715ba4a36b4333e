"""The forum services: users, enrollments and their chats, reading chats and messages (with
the policy applied), writing messages and read marks, Pachca account linking, the services'
validated inputs, and the contract's JSON objects (views)."""
