"""Live capture: the OS-neutral logic (``base``, ``policy``), one backend per OS (``linux``,
``mach``) and the crash supervisor (``supervise``).
"""
